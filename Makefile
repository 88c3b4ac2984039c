# Every target creates .venv and installs the project on first use, so a fresh clone needs only
# python3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO := demo
# Test files run in parallel, one file per process at a time (their module fixtures stay shared).
# Many tests wait on subprocesses, servers and timeouts rather than compute, so three processes
# beat two on 2 cores: 498 s against 625 s for the whole suite (2-core Xeon, 2026-12-05).
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3
# What the formatter keeps formatted (pyproject.toml's [tool.yapf]).
FORMATTED := benchmarks common preprocess sample tests train setup.py

.PHONY: install test format demo bench clean

$(STAMP): requirements.txt requirements-test.txt requirements-gcp.txt requirements-aws.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt -e .
	touch $(STAMP)

install: $(STAMP)

# An unformatted file fails the test run before any test: `make format` fixes it.
test: $(STAMP)
	@unformatted=$$($(PY) -m yapf --diff --recursive --parallel $(FORMATTED) \
	  | sed -n 's/^--- \(.*\)\t(original)$$/\1/p'); \
	if [ -n "$$unformatted" ]; then echo "not formatted (make format fixes them):" $$unformatted; exit 1; fi
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

format: $(STAMP)
	$(PY) -m yapf --in-place --recursive --parallel $(FORMATTED)

demo: $(STAMP)
	bash scripts/demo.sh $(PY) $(DEMO)

bench: $(STAMP)
	$(PY) -m benchmarks.bench_preprocess

clean:
	rm -rf $(VENV) $(DEMO) bench_out
