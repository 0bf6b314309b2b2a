# Two commands on a fresh machine with Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install assets validators documents browser demo dev test test-unit test-integration test-web test-e2e test-faults lint bench screenshots clean

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

# Installs the Debian packages named in $$pkgs, if any: as root, through sudo, or else
# says how. $(1): the target's name; $(2): what goes without them meanwhile.
define apt_install
if [ -n "$$pkgs" ]; then \
  if [ "$$(id -u)" = 0 ]; then sudo=""; \
  elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
  else \
    echo "$(1): missing$$pkgs; install them as root with:"; \
    echo "  apt-get update && apt-get install -y$$pkgs"; \
    echo "$(1): $(2)"; \
    exit 0; \
  fi; \
  echo "$(1): apt-get install$$pkgs"; \
  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$pkgs >/dev/null; \
fi
endef

# What printing invoices and statements to PDF needs from the system, installed when
# missing: WeasyPrint's Pango, HarfBuzz (its subsetter) and fontconfig, the DejaVu fonts
# the documents are set in, and pdftotext, with which the tests read the PDFs back.
documents: $(STAMP)
	@pkgs=""; \
	$(BIN)/python -c "from weasyprint import HTML" >/dev/null 2>&1 || \
	  pkgs=" libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 libfontconfig1"; \
	fc-list 2>/dev/null | grep -q "DejaVu Sans" || pkgs="$$pkgs fontconfig fonts-dejavu-core"; \
	command -v pdftotext >/dev/null 2>&1 || pkgs="$$pkgs poppler-utils"; \
	$(call apt_install,documents,no PDF is printed and the tests of documents fail until then)

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; never
# `playwright install`), installed when missing.
browser: documents
	@pkgs=""; \
	[ -x /usr/bin/chromium ] || pkgs=" chromium"; \
	$(call apt_install,browser,the browser tests skip until then (and fail when CI=true))

demo: install documents
	$(BIN)/vestry demo

dev: install documents
	$(BIN)/vestry dev

# Two workers, a test file each at a time: most of the suite waits on servers and
# subprocesses, so two at once roughly halve the run on two cores.
PYTEST_WORKERS ?= 2

# The slowest tests are listed at the end, to see where the run's time goes.
test: install browser validators lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15

test-unit: install documents validators
	$(BIN)/python -m pytest -q tests/unit

test-integration: install documents validators
	$(BIN)/python -m pytest -q tests/integration

test-web: install browser
	$(BIN)/python -m pytest -q tests/web

# The README's pictures of the site, taken by the browser tests themselves.
screenshots: install browser
	VESTRY_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/web/test_booking_in_browser.py tests/web/test_office_in_browser.py \
	  tests/web/test_office_events_in_browser.py tests/web/test_office_alerts_in_browser.py

test-e2e: install browser
	$(BIN)/python -m pytest -q tests/e2e

test-faults: install documents
	$(BIN)/python -m pytest -q tests/faults

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
