#!/usr/bin/env bash
# Train with one process per GPU (torchrun); on a CPU-only machine the
# processes use gloo.
#   bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py options...]
# Multi-node: NNODES=2 NODE_RANK=0|1 MASTER_ADDR=host PORT=29500 on each node.
set -euo pipefail
source "$(dirname "$0")/launch.sh"
need_args 2 "CONFIG NUM_PROCESSES [train.py options...]" "$@"
torchrun_tool "$2" train.py "$1" --launcher pytorch "${@:3}"
