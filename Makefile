# The two commands a newcomer needs (both set up .venv first, idempotently):
#   make demo  - train RetinaNet + PVTv2-B0 on the generated demo data, print COCO metrics,
#                save predictions beside the ground truth and the training curve
#   make test  - run the test suite
#   make test-portability - the suite once per CPU instruction-set level and
#                thread count (docs/testing.md); LEVELS="native avx2" for a subset
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow test-portability

setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/misc/demo.py

test: setup
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow tests $(PYTEST_ARGS)

test-portability: setup
	PY=$(PY) bash tools/test_portability.sh $(PYTEST_ARGS)
