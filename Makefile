# Every target creates .venv and installs the project on first use, so a fresh clone needs only
# python3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO := demo

.PHONY: install test demo bench clean

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	bash scripts/demo.sh $(PY) $(DEMO)

bench: $(STAMP)
	$(PY) -m benchmarks.bench_preprocess

clean:
	rm -rf $(VENV) $(DEMO) bench_out
