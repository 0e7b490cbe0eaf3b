# Two entry points do all the set-up: `make run` (the app on the bundled default) and
# `make test` (the quick tier of the test suite, under 4 minutes on a 2-core VM). Each creates .venv and installs
# what it needs on first use. `make test-slow` runs the rest (real-photo integration, reproductions of the shipped
# models, the browser tests; about 15 minutes there); CI runs both, so every test runs once.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
TORCH_PIN := torch==2.13.0
FACENET_PIN := facenet-pytorch==2.6.0

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: run test test-slow test-all lint bench install install-dev browser clean

run: $(VENV)/.installed
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PY) app.py

# The tiers split on the `slow` marker (pyproject.toml): a test that takes seconds on the bundled real faces, or drives
# the app in chromium, is `slow`; everything else must keep `make test` quick. --durations names the slowest five,
# so a test that grows shows up in every run.
test: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" --durations=5 $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-dev browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m slow --durations=10 $(PYTEST_ARGS)

test-all: $(VENV)/.installed-dev browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=10 $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check dlfd_core app.py tests scripts

bench: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m dlfd_core data --summary --no-cache

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python requirements.txt pyproject.toml
	$(PIP) install $(TORCH_PIN)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	$(PIP) install --no-deps $(FACENET_PIN)
	touch $@

# The browser tests (tests/browser) drive Debian's chromium through playwright; never `playwright install`.
# Installs chromium with apt-get when it is missing (as root, or through password-less sudo). When it cannot,
# this says why and goes on: the browser tests then skip, or fail when CI=true.
CHROMIUM := /usr/bin/chromium

browser:
	@if [ -x "$(CHROMIUM)" ] || { [ -n "$$DLFD_CHROMIUM" ] && [ -x "$$DLFD_CHROMIUM" ]; }; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make browser: no apt-get; install chromium (or set DLFD_CHROMIUM) to run the browser tests."; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make browser: not root and no password-less sudo; run 'sudo apt-get install chromium'" \
		"to run the browser tests."; exit 0; fi; \
	echo "make browser: installing chromium with apt-get (about a minute)..."; \
	log=$$(mktemp); \
	if $$SUDO apt-get update -q >"$$log" 2>&1 \
		&& $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >>"$$log" 2>&1 \
		&& [ -x "$(CHROMIUM)" ]; then echo "make browser: installed $$($(CHROMIUM) --version 2>/dev/null)"; \
	else tail -n 20 "$$log"; echo "make browser: could not install chromium; the browser tests will not run."; fi; \
	rm -f "$$log"

clean:
	rm -rf $(VENV) .pytest_cache
