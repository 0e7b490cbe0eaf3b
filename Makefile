# Two entry points do all the set-up: `make run` (the app on the bundled default) and
# `make test` (the test suite). Each creates .venv and installs what it needs on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
TORCH_PIN := torch==2.13.0
FACENET_PIN := facenet-pytorch==2.6.0

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: run test lint bench install install-dev clean

run: $(VENV)/.installed
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PY) app.py

test: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

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

clean:
	rm -rf $(VENV) .pytest_cache
