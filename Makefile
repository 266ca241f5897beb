# scanstation — two commands: `make run` (set up and run the station), `make test` (set up and run the tests).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./data
INBOX ?= ./inbox
PORT ?= 8000
WORKERS ?= 2
# Debian packages the station calls; fonts-* are for generating test and benchmark pages.
APT_PACKAGES := tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng ghostscript poppler-utils qpdf xorriso \
	redis-server fonts-noto-cjk fonts-arphic-ukai fonts-arphic-uming python3-venv \
	libgl1 libglib2.0-0
# Debian's chromium for the web page's tests: Playwright drives it (no browser is ever downloaded); Debian's
# firefox-esr for the offline export's, driven over WebDriver BiDi (tests/firefox.py).
TEST_APT_PACKAGES := chromium firefox-esr
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Every Python package pinned, with hashes: the dev lock for the Makefile's venv (run and test), the
# runtime lock for the Docker image. Both made by `make lock` from pyproject.toml (see README).
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock

.PHONY: run test deps system test-system venv lint bench bench-scale lock upgrade clean

run: deps
	$(VENV)/bin/scanstation up --data $(DATA) --inbox $(INBOX) --port $(PORT) --workers $(WORKERS)

test: deps test-system
	$(PY) -m pytest $(PYTEST_ARGS)

# The station end to end against ocrmypdf on a generated corpus; see bench/README.md.
bench: deps
	$(PY) -m bench $(BENCH_ARGS)

# One 1,000-page batch through the station: pages lost, time and memory per 100 pages; see bench/README.md.
bench-scale: deps
	$(PY) -m bench scale $(BENCH_ARGS)

deps: system venv

# Installs only what is missing, so a second run starts at once.
define APT_INSTALL
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

system:
	$(call APT_INSTALL,$(APT_PACKAGES))

test-system:
	$(call APT_INSTALL,$(TEST_APT_PACKAGES))

venv: $(VENV)/.installed

$(VENV)/.installed: $(DEV_LOCK) pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install -q --no-deps -e .
	@$(PY) -c "$$LOCK_CHECK"
	@touch $@

# pyproject.toml's requirements (the dev extra too) against what the lock installed: a dependency
# added without `make lock` stops here, named, instead of as an ImportError in some test.
define LOCK_CHECK
import sys
from importlib import metadata
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
have = {canon(d.metadata['Name']): d.version for d in metadata.distributions()}
need = [Requirement(r) for r in metadata.requires('scanstation') or []]
need = [r for r in need if r.marker is None or r.marker.evaluate({'extra': 'dev'})]
bad = [f'{r.name}{r.specifier}' for r in need if not r.specifier.contains(have.get(canon(r.name), '0.dev0'), prereleases=True)]
if bad:
    sys.exit('pyproject.toml asks for ' + ', '.join(bad) + ' that $(DEV_LOCK) does not pin: run make lock')
endef
export LOCK_CHECK

# The locks from pyproject.toml, keeping every pin that still fits it (after adding or removing a
# dependency). uv resolves against PyPI alone, whatever index pip is configured with.
UV = $(VENV)/bin/uv
UV_COMPILE = $(UV) pip compile pyproject.toml --universal --generate-hashes --quiet --custom-compile-command 'make lock'
lock:
	@[ -x $(UV) ] || { [ -x $(PY) ] || python3 -m venv $(VENV); $(PY) -m pip install -q uv; }
	$(UV_COMPILE) --extra dev $(UV_ARGS) -o $(DEV_LOCK)
	$(UV_COMPILE) --constraint $(DEV_LOCK) -o $(LOCK)

# Every package to its newest release within pyproject.toml's bounds; then `make bench` before committing.
upgrade:
	$(MAKE) lock UV_ARGS=--upgrade

lint: venv
	$(VENV)/bin/ruff check scanner_service workers ocr_models tests
	$(VENV)/bin/mypy scanner_service workers ocr_models

clean:
	rm -rf $(VENV) build *.egg-info
