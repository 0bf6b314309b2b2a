# Two commands on a fresh machine with Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install assets validators browser demo dev test test-unit test-integration test-web test-e2e test-faults lint bench screenshots clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) assets

# The web service's CSS and JS (GOV.UK Frontend from npm, branded as the partnership) into
# services/web/static/govuk/. Needs Node.js and npm; quick when nothing changed.
assets:
	bash services/web/frontend/build.sh

# Independent checkers from npm for what leaves Vestry (tests/validators/package.json).
validators: tests/validators/node_modules/.package-lock.json

tests/validators/node_modules/.package-lock.json: tests/validators/package.json tests/validators/package-lock.json
	npm ci --prefix tests/validators --no-audit --no-fund --ignore-scripts --loglevel=error

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; never
# `playwright install`) and pdftotext for checking PDFs, installed when missing.
browser:
	@pkgs=""; \
	[ -x /usr/bin/chromium ] || pkgs=" chromium"; \
	command -v pdftotext >/dev/null 2>&1 || pkgs="$$pkgs poppler-utils"; \
	if [ -n "$$pkgs" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	  else \
	    echo "browser: missing$$pkgs; install them as root with:"; \
	    echo "  apt-get update && apt-get install -y$$pkgs"; \
	    echo "browser: the browser tests skip until then (and fail when CI=true)"; \
	    exit 0; \
	  fi; \
	  echo "browser: apt-get install$$pkgs"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$pkgs >/dev/null; \
	fi

demo: install
	$(BIN)/vestry demo

dev: install
	$(BIN)/vestry dev

test: install browser validators lint
	$(BIN)/python -m pytest -q

test-unit: install validators
	$(BIN)/python -m pytest -q tests/unit

test-integration: install validators
	$(BIN)/python -m pytest -q tests/integration

test-web: install browser
	$(BIN)/python -m pytest -q tests/web

# The README's pictures of the site, taken by the browser tests themselves.
screenshots: install browser
	VESTRY_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/web/test_booking_in_browser.py tests/web/test_office_in_browser.py

test-e2e: install browser
	$(BIN)/python -m pytest -q tests/e2e

test-faults: install
	$(BIN)/python -m pytest -q tests/faults

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
