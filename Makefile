# SCRM: `make run` starts everything locally, `make test` runs every test against real Postgres and Kafka.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
BOOT := .cache/bootstrap
UV := $(BOOT)/bin/uv
VENV := .venv
export UV_PYTHON := $(shell command -v python3.11 || command -v $(PYTHON))

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -m venv $(BOOT)
	@$(BOOT)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

setup: $(UV) ## Create .venv with every package installed from uv.lock
	@$(UV) sync --frozen --quiet

run: setup ## Start Postgres, Kafka and the four services locally (Ctrl-C stops them)
	@$(VENV)/bin/scrm run

test: setup lint ## Lint, then run unit, integration and end-to-end tests (starts what it needs)
	@$(VENV)/bin/pytest

unit: setup ## Run only the unit tests (no I/O)
	@$(VENV)/bin/pytest -m "not e2e" services

lint: setup ## ruff check and format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: setup ## Format the code
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

bench: setup ## Run the benchmarks under bench/ (tables on stdout, JSON in bench/results/)
	@$(UV) sync --frozen --quiet --group bench
	@for b in bench/[!_]*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

deploy-check: setup ## Validate compose and Helm (builds a pinned helm from Go modules once, into .cache/bin)
	@PYTHON=$(VENV)/bin/python bash deploy/check.sh

clean: ## Remove local state (database, Kafka data, logs); keeps caches
	rm -rf .local

.PHONY: help setup run test unit lint format bench deploy-check clean
