# `make test` and `make demo` create or reuse .venv, install mirage with the CPU torch pinned by
# constraints-cpu.txt, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_FLAGS := -c constraints-cpu.txt $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
STAMP := $(VENV)/.installed

.PHONY: test demo bench install clean

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_FLAGS) -e '.[wan,eval,dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The embedded default: the tiny backbone, a built-in scene and a pan-return path → out/generate/
demo: $(STAMP)
	$(PY) -m mirage generate

bench: $(STAMP)
	$(PY) -m mirage bench memory --size 64x128 --chunks 10 --vae-chunks 2 --out out/bench

clean:
	rm -rf $(VENV) out
