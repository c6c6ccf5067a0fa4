#!/usr/bin/env bash
# Test a checkpoint with one process per GPU (torchrun).
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py options...]
set -euo pipefail
source "$(dirname "$0")/launch.sh"
need_args 3 "CONFIG CHECKPOINT NUM_PROCESSES [test.py options...]" "$@"
torchrun_tool "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
