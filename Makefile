# MiniShop developer entry points. Every target installs what it needs into .venv first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
FLASK := cd backend && ../$(BIN)/flask --app minishop

.PHONY: help run test lint fmt migrate seed deps dev-deps lock clean bench bench-tuning bench-embedded loadtest bench-observability observability-up

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk -F':.*## ' '{name[NR] = $$1; text[NR] = $$2; if (length($$1) > w) w = length($$1)} \
	    END {for (i = 1; i <= NR; i++) printf "  %-*s  %s\n", w, name[i], text[i]}'

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.deps: backend/requirements.lock backend/pyproject.toml tools/wechat_emulator/pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r backend/requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e backend -e tools/wechat_emulator
	touch $@

$(VENV)/.dev-deps: backend/requirements-dev.lock $(VENV)/.deps
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r backend/requirements-dev.lock
	touch $@

deps: $(VENV)/.deps ## install the runtime dependencies into .venv
dev-deps: $(VENV)/.dev-deps ## install runtime + development dependencies into .venv

lock: | $(BIN)/uv ## re-resolve backend/requirements*.lock from backend/pyproject.toml
	cd backend && ../$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -q -o requirements.lock
	cd backend && ../$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -q -o requirements-dev.lock

migrate: deps ## apply database migrations (flask db upgrade)
	$(FLASK) db upgrade

seed: deps ## insert the demo catalog (idempotent)
	$(FLASK) seed

run: migrate seed ## migrate, seed, start the WeChat emulator and serve on 127.0.0.1:PORT (8000)
	exec tools/run-local.sh

observability-up: dev-deps ## Prometheus :9090 and Alertmanager :9093 with our rules, next to make run
	bash pipelines/install-system-deps.sh test
	$(BIN)/python tools/observability_up.py

test: dev-deps ## the whole test suite against real MariaDB and Redis, with coverage
	bash pipelines/test.sh

lint: dev-deps ## ruff, mypy, shellcheck, hadolint, yamllint and the CI/deploy config checks
	bash pipelines/lint.sh

bench-embedded: dev-deps ## the embedded default (SQLite, no Redis): several workers vs one; reports/
	bash pipelines/install-system-deps.sh bench
	$(BIN)/python loadtest/bench_embedded.py

loadtest: dev-deps ## Locust journey with thresholds (LOADTEST_HOST/_USERS/_DURATION); reports/
	bash pipelines/install-system-deps.sh bench
	$(BIN)/python loadtest/run_loadtest.py

bench: dev-deps ## every performance target from one run, met or missed; reports/bench.md, .json, .png
	bash pipelines/install-system-deps.sh bench
	$(BIN)/python loadtest/bench.py

bench-tuning: dev-deps ## gunicorn layouts and keep-alive on detail and list (req/s, p99); reports/tuning.md
	bash pipelines/install-system-deps.sh bench
	$(BIN)/python loadtest/bench.py --tuning

bench-observability: dev-deps ## cached product reads with logs, metrics and traces on vs off (wrk)
	bash pipelines/install-system-deps.sh bench
	$(BIN)/python loadtest/bench_observability.py

fmt: dev-deps ## format and auto-fix
	cd backend && ../$(BIN)/ruff format . && ../$(BIN)/ruff check --fix .

clean: ## remove the virtualenv, reports and the local SQLite database
	rm -rf $(VENV) reports backend/instance
