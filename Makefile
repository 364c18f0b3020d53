# Two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv on first use; nothing outside the checkout is touched,
# except by `make test-container`: podman's storage (/var/lib/containers, ~3 GB
# of cached images) and, when missing, the podman, runc, slirp4netns and
# debootstrap packages.
# `make test-client` (CI runs it after `make test`) builds the client-only
# install in $(CLIENT_VENV) and tests it against a server from .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
CLIENT_VENV ?= .venv-client

.PHONY: demo test test-client test-container bench bench-quick lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) install -e '.[full]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[full,dev,torch]'
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(PY) -m rnnserve demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 --durations=15

# The embedded image built and served for real with podman: root only (it installs
# podman, runc, slirp4netns, debootstrap with apt-get when missing); minutes cold.
test-container: $(VENV)/.installed-dev
	$(PY) -m pytest -n 0 -m container tests/container --durations=0

# A fresh client-only venv (`pip install .`: no TensorFlow, no Keras), checked
# and tested against `rnnserve serve` from .venv on free loopback ports.
test-client: $(VENV)/.installed-dev
	rm -rf $(CLIENT_VENV)
	$(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip --disable-pip-version-check --quiet install . 'pytest>=8,<10'
	$(PY) tests/client/serve_and_run.py --client-python $(CLIENT_VENV)/bin/python

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

bench: $(VENV)/.installed-dev
	$(PY) -m rnnserve bench all

bench-quick: $(VENV)/.installed-dev
	$(PY) -m rnnserve bench all --quick

clean:
	rm -rf $(VENV) $(CLIENT_VENV) runs exports demo .pytest_cache build
