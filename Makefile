# scanstation — two commands: `make run` (set up and run the station), `make test` (set up and run the tests).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./data
INBOX ?= ./inbox
PORT ?= 8000
WORKERS ?= 2
# Debian packages the station calls; fonts-* are for generating test and benchmark pages.
APT_PACKAGES := tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-eng ghostscript poppler-utils qpdf \
	redis-server fonts-noto-cjk fonts-arphic-ukai fonts-arphic-uming python3-venv \
	libgl1 libglib2.0-0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps system venv lint bench bench-scale clean

run: deps
	$(VENV)/bin/scanstation up --data $(DATA) --inbox $(INBOX) --port $(PORT) --workers $(WORKERS)

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

# The station end to end against ocrmypdf on a generated corpus; see bench/README.md.
bench: deps
	$(PY) -m bench $(BENCH_ARGS)

# One 1,000-page batch through the station: pages lost, time and memory per 100 pages; see bench/README.md.
bench-scale: deps
	$(PY) -m bench scale $(BENCH_ARGS)

deps: system venv

# Installs only what is missing, so a second run starts at once.
system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check scanner_service workers ocr_models tests
	$(VENV)/bin/mypy scanner_service workers ocr_models

clean:
	rm -rf $(VENV) build *.egg-info
