# Vapor's entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STATE ?= .vapor/cluster
DEVENV := $(PY) -m vapor.devenv --state-dir $(STATE)
# `make cluster-up` adds kubelet nodes (each with containerd in its own network namespace; scheduler, controller
# manager, DNS) when run as root: NODES of them (default 1; NODES=2 for two, started at once; NODE=0 none).
NODE ?= $(if $(filter 0,$(shell id -u)),1,0)
NODES ?= $(NODE)

.PHONY: help install ui binaries guest-image generate lint test chaos bench dev cluster-up cluster-down cluster-env cluster-destroy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## Create .venv and install Vapor with its dev tools

# The web console: the gateway's OpenAPI document -> TypeScript types -> type check -> Vite build into api/static
# (served at / by the gateway). npm ci runs again only when the lockfile changed.
ui/node_modules/.installed: ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

ui: install ui/node_modules/.installed ## Build the web console (ui/) into api/static, its types from the gateway's OpenAPI
	$(PY) -m vapor.gateway.openapidoc ui/openapi.json
	cd ui && npm run -s build

binaries: ## Build (once) and cache kube-apiserver, etcd, kubectl, helm, the node's kubelet, kube-proxy, scheduler and controller manager, and CoreDNS
	@hack/kube-binaries.sh >/dev/null
	@hack/kube-binaries.sh helm >/dev/null
	@hack/kube-binaries.sh node >/dev/null
	@hack/kube-binaries.sh coredns >/dev/null

guest-image: ## Build (once, as root) and cache the Debian test guest image (hack/guest-image.sh)
	@if [ "$$(id -u)" = 0 ]; then hack/guest-image.sh >/dev/null; \
	else sudo env VAPOR_CACHE="$${VAPOR_CACHE:-$$HOME/.cache/vapor}" hack/guest-image.sh >/dev/null; fi

generate: install ## Write crds/ from the model in vapor/model
	$(PY) -m vapor.crdgen

lint: install ## ruff (lint and format) and mypy (operator/ checked as vapor.operator: hack/mypy_operator.py)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) hack/mypy_operator.py

test: install ui binaries guest-image lint ## The whole suite (lint, the console's unit tests, then pytest)
	cd ui && npm run -s test
	$(PY) -m pytest $(PYTEST_ARGS)

# The chaos soak (tests/chaos): kills at random for VAPOR_CHAOS_DURATION seconds (default 30 min), then the counts.
VAPOR_CHAOS_DURATION ?= 1800
chaos: install binaries ## Chaos soak: SIGKILL at random to every part during a REST wave for $$VAPOR_CHAOS_DURATION s; prints the counts
	VAPOR_CHAOS_DURATION=$(VAPOR_CHAOS_DURATION) $(PY) -m pytest tests/chaos -m chaos -k wave -s $(PYTEST_ARGS)

bench: install binaries ## Benchmarks under bench/, printing their figures
	$(PY) -m bench $(BENCH_ARGS)

dev: install ui binaries ## The embedded default: control plane and CRDs (and the components) until Ctrl-C
	$(DEVENV) dev

cluster-up: install binaries ## Start the control plane and (as root) NODES kubelet nodes in the background; kubeconfig in .vapor/cluster/kubeconfig
	@$(DEVENV) up --nodes $(NODES) >/dev/null
	@echo "cluster up; run: eval \$$(make -s cluster-env)"

cluster-down: ## Stop the background control plane and nodes (the control plane's data is kept for the next cluster-up)
	@$(DEVENV) down

cluster-destroy: ## Stop it and delete its data and certificates
	@$(DEVENV) destroy

cluster-env: ## Print `export KUBECONFIG=...` for eval
	@echo "export KUBECONFIG=$(abspath $(STATE))/kubeconfig"

clean: cluster-destroy ## Remove the virtualenv and caches of this checkout
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
