#!/usr/bin/env bash
# Run the default test suite once per CPU instruction-set level (and thread
# count), on this machine, to see what other machines' arithmetic gives.
#
# PyTorch picks its CPU kernels at run time; three variables cap the choice:
#   ATEN_CPU_CAPABILITY     ATen's own kernels    (default | avx2 | avx512)
#   MKL_ENABLE_INSTRUCTIONS MKL's GEMMs           (SSE4_2 | AVX2 | AVX512)
#   ONEDNN_MAX_CPU_ISA      oneDNN's convolutions (SSE41 | AVX2 | AVX512_CORE ...)
# Each changes the order of floating-point sums, and so the last bits of
# every result: a test that passes at one level only depends on its CPU.
#
# Usage: tools/test_portability.sh [pytest args...]
#   LEVELS="native avx2" tools/test_portability.sh   # a subset
# Levels: native (nothing capped, 2 threads), native-1t (1 thread),
#         avx2 (AVX2 everywhere), baseline (no AVX: default/SSE4_2/SSE41).
# Exits non-zero if any level fails; prints one line per level at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LEVELS=${LEVELS:-native native-1t avx2 baseline}

level_env() {
  case $1 in
    native)    echo "PVT_MM_TEST_THREADS=2" ;;
    native-1t) echo "PVT_MM_TEST_THREADS=1" ;;
    avx2)      echo "PVT_MM_TEST_THREADS=2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2" ;;
    baseline)  echo "PVT_MM_TEST_THREADS=2 ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41" ;;
    *) echo "test_portability: unknown level '$1' (known: native native-1t avx2 baseline)" >&2; return 1 ;;
  esac
}

summary=()
status=0
for level in $LEVELS; do
  vars=$(level_env "$level") || exit 2
  echo "=== level $level: $vars"
  # Show what the process really runs with: a cap that is not honoured
  # would make this level test nothing new.
  # shellcheck disable=SC2086
  env $vars "$PY" -c "import torch; print('ATen CPU capability:', torch.backends.cpu.get_cpu_capability(), '| threads:', __import__('os').environ['PVT_MM_TEST_THREADS'])"
  start=$(date +%s)
  # shellcheck disable=SC2086
  if env $vars "$PY" -m pytest -q tests "$@"; then result=passed; else result=FAILED; status=1; fi
  summary+=("$level: $result in $(( $(date +%s) - start )) s ($vars)")
done
echo "=== portability summary"
printf '%s\n' "${summary[@]}"
exit $status
