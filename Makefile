# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch, installed only where the venv has no torch yet (a GPU image keeps its own).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	# Pinned to the torch now in the venv: pip's resolver may otherwise swap it for a newer
	# CUDA build of several GB that the project's torch range also admits.
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(PY) -m pip install --quiet -e ".[dev]" -c $(VENV)/torch-pin.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pix2pix demo

# Tests in TEST_WORKERS processes (pytest-xdist), a test module or tests/multinode to one
# process, multinode first (tests/conftest.py): one test alone leaves about a quarter of
# the 2 cores here idle (1.5 of 2 busy, measured over a whole run).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The flag tables in docs/*.md, regenerated from the code (tests/test_docs.py checks them).
.PHONY: docs
docs: $(STAMP)
	$(PY) -m pipelines.flag_tables

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
