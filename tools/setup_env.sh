#!/usr/bin/env bash
# One-command, idempotent environment setup for pvt_mm (CPU machine).
# Creates .venv at the repo root with uv and installs the pinned stack:
# torch/torchvision -> build deps -> mmcv 2.1.0 compiled with ops ->
# mmengine, mmdet, mmseg, mmpretrain -> test deps -> pvt_mm (editable).
# Re-running it when everything is in place takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
STAMP=$VENV/.pvt_mm_setup_stamp

die() { echo "setup_env: FAILED: $*" >&2; exit 1; }
step() { echo "setup_env: $*"; }

want_stamp=$(cat tools/setup_env.sh requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && "$(cat "$STAMP")" == "$want_stamp" ]] && \
   "$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, pvt_mm" 2>/dev/null; then
  step "environment up to date ($VENV)"
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
# into a wheel cache keyed by torch and Python, so fresh checkouts on the same
# machine install it in seconds.
if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  key=$("$PY" -c "import sys, torch; print(f'torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}')")
  WHEELS=${PVT_MM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pvt_mm/wheels/$key}
  if ! ls "$WHEELS"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    step "building mmcv 2.1.0 with ops from source (about 12 min on 2 cores, once per machine; cache: $WHEELS)"
    "${UVPIP[@]}" pip || die "could not install pip into $VENV"
    mkdir -p "$WHEELS.tmp"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip wheel --quiet --no-deps \
      --no-build-isolation --no-binary mmcv -w "$WHEELS.tmp" mmcv==2.1.0 \
      || die "mmcv build failed (needs gcc, python headers, setuptools<82)"
    mkdir -p "$WHEELS" && mv "$WHEELS.tmp"/mmcv-2.1.0-*.whl "$WHEELS"/ && rm -rf "$WHEELS.tmp"
  fi
  "${UVPIP[@]}" --no-deps "$WHEELS"/mmcv-2.1.0-*.whl || die "installing the cached mmcv wheel failed"
fi
step "installing mmdet, mmseg, mmpretrain and test requirements"
"${UVPIP[@]}" -r requirements/mminstall.txt -r requirements/runtime.txt -r requirements/tests.txt \
  || die "installing runtime/test requirements failed"
"$PY" -c "from mmcv.ops import nms, RoIAlign" || die "mmcv.ops does not import: mmcv was built without ops"
step "installing pvt_mm (editable)"
"${UVPIP[@]}" --no-deps --no-build-isolation -e . || die "editable install of pvt_mm failed"
"$PY" -m pvt_mm_config_hook >/dev/null || die "could not install the pvt_mm:: config hook"
"$PY" -c "import mmcv.ops, mmdet.models, mmseg.models, mmpretrain.models, pvt_mm" \
  || die "the installed stack does not import together"
echo "$want_stamp" > "$STAMP"
step "done: activate with 'source .venv/bin/activate'"
