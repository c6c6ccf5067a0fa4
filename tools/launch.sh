# Shared by tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh:
# sourced by them, not run. Environment: PYTHON (default python); torchrun
# NNODES / NODE_RANK / MASTER_ADDR / PORT; Slurm GPUS / GPUS_PER_NODE /
# CPUS_PER_TASK / SRUN_ARGS.
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python}

# need_args N USAGE "$@": exit 2 with the usage line when fewer than N
# arguments were given.
need_args() {
    local n=$1 usage=$2
    shift 2
    if [ $# -lt "$n" ]; then
        echo "usage: $0 $usage" >&2
        exit 2
    fi
}

# torchrun_tool NPROC SCRIPT ARGS...: tools/SCRIPT in NPROC processes per
# node (on a CPU-only machine the processes use gloo).
torchrun_tool() {
    local nproc=$1 script=$2
    shift 2
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
        --nproc_per_node="$nproc" "$TOOLS/$script" "$@"
}

# srun_tool PARTITION JOB_NAME SCRIPT ARGS...: tools/SCRIPT as one Slurm
# task per GPU.
srun_tool() {
    local partition=$1 job=$2 script=$3
    shift 3
    local gpus=${GPUS:-8}
    local per_node=${GPUS_PER_NODE:-$(( gpus < 8 ? gpus : 8 ))}
    # shellcheck disable=SC2086  # SRUN_ARGS holds several options
    exec srun -p "$partition" --job-name="$job" \
        --gres=gpu:"$per_node" --ntasks="$gpus" \
        --ntasks-per-node="$per_node" --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
        "$PYTHON" -u "$TOOLS/$script" "$@"
}
