# geodeploy — the two commands of the README:
#   make demo   runs the scripted demo on the local sandbox (builds what it needs first)
#   make test   runs every test: the fast core tier, infra checks, and the sandbox tier
# The functions' runtime (python312 in infra/functions.tf): the venv, the tests and the
# sandbox's functions all run on it.
PYTHON ?= $(shell scripts/find-python.sh 3.12)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-core lint venv binaries tools browser manifests sandbox-up sandbox-down clean

$(VENV)/.installed: requirements.txt requirements-cli.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python 3.12: see scripts/find-python.sh" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Kubernetes control planes, etcd and kwok, built from the Go module proxy into
# ~/.cache/geodeploy (about 7 minutes the first time, reused after).
binaries:
	sandbox/controlplane/build.sh >/dev/null

# The shipped configs' kustomize sources, rendered beside each kustomization (where a
# function loads them) with kustomize built from the Go module proxy (under a minute).
# (`geodeploy kustomize` does nothing for a config without one.)
manifests: venv
	@kustomize=$$(sandbox/kustomize/build.sh) && for config in config/*.yaml config/examples/*.yaml; do \
	  $(PY) -m cli kustomize --config $$config --kustomize "$$kustomize" >/dev/null || exit 1; done

# checkov, in a virtualenv of its own (its pins clash with ours), and the Google provider
# schema tests/infra checks infra/ against (built once from PyPI into ~/.cache/geodeploy).
tools: venv
	scripts/install-checkov.sh >/dev/null
	$(PY) scripts/provider_schema.py >/dev/null

# Debian's Chromium, for the status page's browser test (apt-get as root, once).
browser:
	scripts/install-chromium.sh >/dev/null

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: venv binaries tools browser manifests lint
	$(PY) -m pytest tests

test-core: venv manifests
	$(PY) -m pytest tests/core -q

demo: venv binaries manifests
	$(PY) -m sandbox.demo

sandbox-up: venv binaries manifests
	$(PY) -m sandbox up --config config/sandbox.yaml --config config/sandbox-waves.yaml

sandbox-down: venv
	$(PY) -m sandbox down
