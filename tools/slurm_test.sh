#!/usr/bin/env bash
# Test a checkpoint on a Slurm cluster, one task per GPU.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options...]
set -euo pipefail
source "$(dirname "$0")/launch.sh"
need_args 4 "PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options...]" "$@"
srun_tool "$1" "$2" test.py "$3" "$4" --launcher=slurm "${@:5}"
