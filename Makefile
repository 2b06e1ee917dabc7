# Two set-up commands keep working on a fresh machine: `make demo` and `make test`.
# constraints*.txt pin the versions known to work together (a newer FastAPI breaks
# Prefect 3.8's server, for one); refresh them with `make constraints` after an upgrade.
PYTHON ?= python3
VENV := .venv
MXVENV := .venv-mxnet
PY := $(VENV)/bin/python
MXPY := $(MXVENV)/bin/python

.PHONY: demo test lint venv mxnet-venv bench constraints clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,opencv]'
	touch $@

$(MXVENV)/.installed: constraints-mxnet.txt
	$(PYTHON) -m venv $(MXVENV)
	$(MXPY) -m pip install -q --upgrade pip
	$(MXPY) -m pip install -q -c constraints-mxnet.txt mxnet==1.9.1 numpy==1.23.5 opencv-python-headless==4.8.1.78
	touch $@

venv: $(VENV)/.installed

mxnet-venv: $(MXVENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m recordio_flow.flows.demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# torch is optional for users (the PyTorch Dataset adapter imports it lazily); the suite
# installs the CPU build so the adapter is tested, not skipped.
$(VENV)/.torch: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	touch $@

test: $(VENV)/.installed $(VENV)/.torch $(MXVENV)/.installed
	$(VENV)/bin/ruff check .
	RECFLOW_REQUIRE_MXNET=1 RECFLOW_MXNET_PYTHON=$(abspath $(MXPY)) $(PY) -m pytest -q

# Side-by-side speed comparisons with MXNet; each prints its ratios.
bench: $(VENV)/.installed $(MXVENV)/.installed
	for b in benchmarks/bench_*.py; do \
		echo "== $$b"; RECFLOW_MXNET_PYTHON=$(abspath $(MXPY)) $(PY) $$b || exit 1; \
	done

constraints: $(VENV)/.installed $(MXVENV)/.installed
	$(PY) -m pip freeze --exclude-editable | grep -v '^recordio-flow' > constraints.txt
	$(MXPY) -m pip freeze > constraints-mxnet.txt

clean:
	rm -rf $(VENV) $(MXVENV) build *.egg-info demo-output
