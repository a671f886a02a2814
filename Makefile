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
	$(PY) -m pip install --quiet $(PIP_FLAGS) -e '.[wan,eval,data,dev,explore]'
	touch $(STAMP)

install: $(STAMP)

# The explorer's browser tests (tests/explore/test_browser.py) drive headless Chromium; they run
# when it is installed and are skipped, with a line saying so, when it is not.
# .ci/run installs it and sets MIRAGE_REQUIRE_BROWSER=1, which turns that skip into a failure.
CHROMIUM ?= $(or $(MIRAGE_CHROMIUM),/usr/bin/chromium)

test: $(STAMP)
	@if [ -x "$(CHROMIUM)" ]; then echo "browser tests: running them in $(CHROMIUM)"; \
	else echo "browser tests: SKIPPED, no Chromium at $(CHROMIUM) (apt-get install -y chromium, or set MIRAGE_CHROMIUM)"; fi
	MIRAGE_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q

# The embedded default: the tiny backbone, a built-in scene and a pan-return path → out/generate/
demo: $(STAMP)
	$(PY) -m mirage generate

bench: $(STAMP)
	$(PY) -m mirage bench memory --size 64x128 --chunks 10 --vae-chunks 2 --out out/bench

clean:
	rm -rf $(VENV) out
