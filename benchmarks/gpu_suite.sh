#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md in one run, most important
# first, each step under its own time limit so a short lease still returns
# the first ones:
#   1. the like-for-like training step (issue 20): RetinaNet / Mask R-CNN
#      (2 x 800x1333) and Semantic FPN (4 x 512x512) with our PVTv2-B2,
#      mmdet's built-in one and timm's, recipe optimizer (AdamW) and batch,
#      fp16 AMP, bf16 AMP, fp32 with TF32 on and off, interleaved in one
#      process; JSON Lines written cell by cell (a killed step keeps what it
#      measured);
#   2. the same step with backbone and neck compiled as tools/train.py
#      --compile does (impl ours-compiled: inductor, static shapes) against
#      ours eager, RetinaNet-PVTv2-B2, fp16 AMP, 2 x 800x1333 (issue 20's
#      --compile target; the warm-up steps hold the compilation);
#   3. whole detectors (RetinaNet-PVTv2-B2 800x1333 ours vs mmdet, Semantic
#      FPN-PVTv2-B2 512x512): inference and training step, bf16 and fp32,
#      latency and peak memory;
#   4. backbones at 800x1333 (pvt_mm vs mmdet / timm / HF), fwd and fwd+bwd,
#      bf16;
#   5. the demo detector trained with --amp (tools/misc/demo.py).
# The time limits add up to 475 s, so the suite ends within 8 min on one
# H100: train_step 180, env 20, compile_train 105, detectors bf16 40 / fp32
# 25, backbones bf16 45, demo 60 s (the backbones in fp32 and the
# backbone-only compile step of earlier versions went to make room for the
# compiled training step). Not yet run on a GPU with these limits; steps
# 3-5 write their JSON only at the end, so one that hits its limit leaves
# only its lines in suite.log.
# Needs CUDA and mmcv built with its CUDA ops. FLOPs are not counted here
# (they do not depend on the device: add them on any machine with
# `bench_backbones.py --from-json ... ` after `--models ... --no-flops`).
#
#   bash benchmarks/gpu_suite.sh OUTDIR        # < 8 min on one H100/H200
#
# OUTDIR receives suite.log and one JSON per step (at most 8 files).
set -u
OUT=${1:?usage: bash benchmarks/gpu_suite.sh OUTDIR}
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
LOG="$OUT/suite.log"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore TRANSFORMERS_VERBOSITY=error

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout "$limit" "$@" >>"$LOG" 2>&1
  echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$LOG"
}

step train_step 180 "$PY" benchmarks/bench_detectors.py --train-step \
  --device cuda --warmup 2 --rounds 5 --steps 1 --json "$OUT/train_step.jsonl"

step env 20 "$PY" -c "
import torch, mmcv, mmdet, mmseg, timm, transformers, pvt_mm
from mmcv.ops import nms
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
print('mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg',
      mmseg.__version__, 'timm', timm.__version__, 'transformers',
      transformers.__version__)
b = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10.]], device='cuda')
print('nms on cuda keeps', nms(b, torch.tensor([.9, .8], device='cuda'), .5)[1].tolist())"

step compile_train 105 "$PY" benchmarks/bench_detectors.py --train-step \
  --device cuda --models retinanet_b2 --impls ours ours-compiled \
  --precisions fp16 --warmup 2 --rounds 3 --steps 1 \
  --json "$OUT/train_step_compile.jsonl"

step detectors_bf16 40 "$PY" benchmarks/bench_detectors.py \
  --device cuda --in-process --dtype bf16 --workloads test train \
  --impls ours mmdet --warmup 2 --repeats 5 --json "$OUT/det_bf16.json"

step backbones_bf16 45 "$PY" benchmarks/bench_backbones.py \
  --device cuda --in-process --dtype bf16 --sizes 800x1333 --no-cp \
  --no-flops --warmup 2 --repeats 5 --json "$OUT/bb_bf16.json"

step demo_amp 60 "$PY" tools/misc/demo.py --amp --threads 4 \
  --work-dir work_dirs/demo_amp
cp work_dirs/demo_amp/demo_metrics.json "$OUT/demo_amp_metrics.json" 2>/dev/null

step detectors_fp32 25 "$PY" benchmarks/bench_detectors.py \
  --device cuda --in-process --dtype fp32 --workloads test train \
  --impls ours mmdet --warmup 2 --repeats 3 --json "$OUT/det_fp32.json"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
  >>"$LOG" 2>&1
echo "== done after $SECONDS s" | tee -a "$LOG"
