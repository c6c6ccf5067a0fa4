#!/usr/bin/env bash
# Train on a Slurm cluster, one task per GPU.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options...]
set -euo pipefail
source "$(dirname "$0")/launch.sh"
need_args 4 "PARTITION JOB_NAME CONFIG WORK_DIR [train.py options...]" "$@"
srun_tool "$1" "$2" train.py "$3" --work-dir="$4" --launcher=slurm "${@:5}"
