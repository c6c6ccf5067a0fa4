#!/usr/bin/env bash
# One-command, idempotent environment setup for pvt_mm.
# Creates .venv at the repo root with uv and installs the pinned stack:
# torch/torchvision -> build deps -> mmcv 2.1.0 compiled with ops ->
# mmengine, mmdet, mmseg, mmpretrain -> test deps -> pvt_mm (editable).
# On a machine with an NVIDIA GPU, mmcv is built with CUDA ops for that GPU
# (needs nvcc of torch's CUDA major; tools/mmcv_build_plan.py says what is
# missing otherwise); PVT_MM_CPU_ONLY=1 builds the CPU ops only.
# Re-running it when everything is in place takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
STAMP=$VENV/.pvt_mm_setup_stamp
MMCV_KEY_FILE=$VENV/.pvt_mm_mmcv_key  # the cache key of the installed mmcv
PLAN_ERR=$(mktemp)
trap 'rm -f "$PLAN_ERR"' EXIT

die() { echo "setup_env: FAILED: $*" >&2; exit 1; }
step() { echo "setup_env: $*"; }

# Which mmcv this machine needs: sets MMCV_PLAN (cpu / cuda), MMCV_KEY (its
# wheel cache key), MMCV_BUILD_ENV (the build's environment) and
# MMCV_PLAN_NOTE, or fails with the reason in $PLAN_ERR.
plan_mmcv() {
  local out
  out=$("$PY" tools/mmcv_build_plan.py 2>"$PLAN_ERR") || return 1
  eval "$out"
}
# The installed mmcv is 2.1.0 with ops and, on a GPU, the CUDA build of
# this plan (on a CPU plan any 2.1.0 with ops will do, as always).
mmcv_installed() {
  { [[ $MMCV_PLAN == cpu ]] || [[ "$(cat "$MMCV_KEY_FILE" 2>/dev/null)" == "$MMCV_KEY" ]]; } &&
    "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null
}

want_stamp=$(cat tools/setup_env.sh tools/mmcv_build_plan.py requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && "$(cat "$STAMP")" == "$want_stamp" ]] && \
   "$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, pvt_mm" 2>/dev/null && \
   plan_mmcv && mmcv_installed; then
  if [[ $MMCV_PLAN == cuda ]]; then
    step "environment up to date ($VENV, mmcv with CUDA ops: $MMCV_KEY)"
  else
    step "environment up to date ($VENV)"
  fi
  exit 0
fi

if ! command -v uv >/dev/null 2>&1; then
  step "installing uv"
  python3 -m pip install --quiet uv || die "could not install uv with 'python3 -m pip install uv'"
  command -v uv >/dev/null 2>&1 || export PATH="$(python3 -m site --user-base)/bin:$PATH"
  command -v uv >/dev/null 2>&1 || die "uv was installed but is not on PATH"
fi

if [[ ! -x $PY ]]; then
  step "creating $VENV"
  uv venv --quiet --python "${PVT_MM_PYTHON:-python3}" "$VENV" || die "uv venv failed"
fi
UVPIP=(uv pip install --quiet --python "$PY")

step "installing torch + torchvision"
"${UVPIP[@]}" -r requirements/torch.txt || die "torch/torchvision install failed"
step "installing build requirements"
"${UVPIP[@]}" -r requirements/build.txt || die "build requirements install failed"
# mmcv 2.1.0 with compiled ops exists only as a source release. Build it once
# into a wheel cache keyed by torch and Python (and, with CUDA ops, nvcc's
# CUDA and the GPU architecture), so fresh checkouts on the same machine
# install it in seconds.
plan_mmcv || die "$(cat "$PLAN_ERR")"
[[ -z $MMCV_PLAN_NOTE ]] || step "$MMCV_PLAN_NOTE"
WHEELS=${PVT_MM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pvt_mm/wheels/$MMCV_KEY}
if ! mmcv_installed; then
  if ! ls "$WHEELS"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    if [[ $MMCV_PLAN == cuda ]]; then
      step "building mmcv 2.1.0 with CUDA ops from source (tens of minutes; set MAX_JOBS to use fewer cores; once per machine; cache: $WHEELS)"
      needs="nvcc, gcc supported by that nvcc, python headers, setuptools<82"
    else
      step "building mmcv 2.1.0 with ops from source (about 12 min on 2 cores, once per machine; cache: $WHEELS)"
      needs="gcc, python headers, setuptools<82"
    fi
    "${UVPIP[@]}" pip || die "could not install pip into $VENV"
    mkdir -p "$WHEELS.tmp"
    env "${MMCV_BUILD_ENV[@]}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip wheel --quiet --no-deps \
      --no-build-isolation --no-binary mmcv -w "$WHEELS.tmp" mmcv==2.1.0 \
      || die "mmcv build failed (needs $needs)"
    mkdir -p "$WHEELS" && mv "$WHEELS.tmp"/mmcv-2.1.0-*.whl "$WHEELS"/ && rm -rf "$WHEELS.tmp"
  fi
  "${UVPIP[@]}" --reinstall-package mmcv --no-deps "$WHEELS"/mmcv-2.1.0-*.whl \
    || die "installing the cached mmcv wheel failed"
  echo "$MMCV_KEY" > "$MMCV_KEY_FILE"
fi
step "installing mmdet, mmseg, mmpretrain and test requirements"
"${UVPIP[@]}" -r requirements/mminstall.txt -r requirements/runtime.txt -r requirements/tests.txt \
  || die "installing runtime/test requirements failed"
if [[ $MMCV_PLAN == cpu ]]; then
  "$PY" -c "from mmcv.ops import nms, RoIAlign" || die "mmcv.ops does not import: mmcv was built without ops"
else
  "$PY" -c "from mmcv.ops import nms, RoIAlign, get_compiling_cuda_version as v; assert v() != 'not available'" \
    || die "mmcv.ops does not import or has no CUDA ops: mmcv was built without them (remove $WHEELS and rerun)"
fi
step "installing pvt_mm (editable)"
"${UVPIP[@]}" --no-deps --no-build-isolation -e . || die "editable install of pvt_mm failed"
"$PY" -m pvt_mm_config_hook >/dev/null || die "could not install the pvt_mm:: config hook"
"$PY" -c "import mmcv.ops, mmdet.models, mmseg.models, mmpretrain.models, pvt_mm" \
  || die "the installed stack does not import together"
echo "$want_stamp" > "$STAMP"
step "done: activate with 'source .venv/bin/activate'"
