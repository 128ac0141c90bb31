# Two commands on a fresh Debian 12 machine: `make studio` and `make test`.
# Every step is idempotent: stamps record what is installed, so a second run installs nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := $(VENV)/.stamps
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts libsndfile1 ffmpeg chromium chromium-driver
PYTEST_ARGS ?=

.PHONY: setup studio test system-deps clean-venv

setup: $(STAMPS)/project

# System packages: apt-get only for the ones missing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build, so nothing later can pull CUDA wheels.
$(STAMPS)/torch: | $(PY)
	@mkdir -p $(STAMPS)
	$(PIP) install -q --upgrade "pip>=24" "setuptools<81" wheel
	$(PIP) install -q torch==2.13.0
	@touch $@

$(STAMPS)/project: pyproject.toml $(STAMPS)/torch | system-deps
	$(PIP) install -q -e ".[all]"
	@touch $@

studio: system-deps setup
	$(VENV)/bin/timbre studio --host 127.0.0.1 --port 7860

test: system-deps setup
	$(PY) -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
