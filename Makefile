# Set-up and entry points. `make figures` and `make test` create .venv when it is
# missing and install the pinned environment first; nothing else is needed by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
# The CPU build of torch (torch==2.13.0+cpu) is taken from a local wheel or
# pip's configured sources when one is there, else from this index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed
CORES ?= 2
SCALE ?= quick

.PHONY: figures test lint bench install clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"Python >= 3.11 is needed, found {sys.version.split()[0]}"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0+cpu \
	  || $(PIP) install -q -c $(CONSTRAINTS) --index-url $(TORCH_INDEX) torch==2.13.0+cpu
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[all]"
	$(PIP) install -q --no-deps --ignore-requires-python -c $(CONSTRAINTS) schnetpack==2.2.0
	$(PY) -c 'import torch, rigidity; assert torch.__version__.endswith("+cpu") or torch.cuda.is_available(), torch.__version__'
	touch $(STAMP)

figures: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES) --config scale=$(SCALE)

test: $(STAMP)
	$(PY) -m pytest -q -n $(CORES) --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_rigidity.py

clean-venv:
	rm -rf $(VENV)
