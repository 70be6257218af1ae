# Entry points for a newcomer: `make run` (the API on http://127.0.0.1:3000) and `make test`; `make help`
# lists every target. Both create .venv and install from the lock on first use: `make run` only what the
# service and the local server need (requirements/run.txt), `make test` adds the test toolchain
# (requirements/dev.txt). `make lock` regenerates the lock files from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PORT ?= 3000
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
# Installing never resolves: every lock is a complete closure (tests/unit/test_locks.py proves it), so
# each is installed with --no-deps by a pinned pip (requirements/installer.txt) and `pip check` confirms
# the result. A package released after the lock therefore changes nothing.
SYNC := $(PIP) install --require-hashes --no-deps
# pip check, except gbstats' own numpy<2 pin: the test-only reference (requirements/reference.txt) is
# installed with --no-deps on purpose, and a re-install after a lock change finds it already there.
PIP_CHECK := $(BIN)/python -m pip check | { grep -v -e '^No broken requirements found' -e '^gbstats ' || true; } | { ! grep .; }
# `make lock` runs uv from its own small venv (never the project's), at a pinned version.
UV_VERSION ?= 0.13.9
TOOLS ?= .tools
UV := $(TOOLS)/bin/uv

.DEFAULT_GOAL := help
.PHONY: help install install-run run migrate seed openapi invoke lock hooks build test lint format typecheck \
	unit integration e2e clean demo browser sam-cli sam-image sam-local sam-api sam-api-check

help: ## list every target with its purpose
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(RUN_STAMP): requirements/installer.txt requirements/run.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(SYNC) -r requirements/installer.txt
	$(SYNC) -r requirements/run.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	rm -rf build *.egg-info
	$(PIP_CHECK)
	touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements/dev.txt requirements/reference.txt
	$(SYNC) -r requirements/dev.txt
	$(PIP_CHECK)
	# Test-only reference engine, after the check: it pins numpy<2, which the parts the tests use do not need.
	$(SYNC) -r requirements/reference.txt
	touch $@

install-run: $(RUN_STAMP) ## create .venv with only the service and the local server (what `make run` needs)

install: $(DEV_STAMP) ## create .venv with everything: the service, the local server and the test toolchain

run: $(RUN_STAMP) ## serve the whole API on http://127.0.0.1:3000 (another port: make run PORT=3201)
	$(BIN)/python -m localdev serve --host 127.0.0.1 --port $(PORT)

migrate: $(RUN_STAMP) ## apply the SQL migrations to the local database
	$(BIN)/python -m localdev migrate

openapi: $(RUN_STAMP) ## regenerate openapi.json from the handlers
	$(BIN)/python -m localdev openapi

seed: $(RUN_STAMP) ## (re)load the reproducible demo catalog (and create the demo experiments if missing)
	$(BIN)/python -m localdev seed --port $(PORT)

demo: $(RUN_STAMP) ## create the demo experiment (8 days of simulated traffic) unless it exists; prints its report URL
	$(BIN)/python -m localdev demo --port $(PORT)

invoke: $(RUN_STAMP) ## like `sam local invoke`: make invoke FUNCTION=ExperimentsFunction EVENT=events/list_experiments.json
	$(BIN)/python -m localdev invoke $(FUNCTION) $(EVENT)

# The report's browser test drives Debian's headless chromium (never a downloaded browser).
browser: ## install chromium and chromium-driver from Debian when missing (needs root)
	command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) || \
	  echo "chromium could not be installed: the browser test will be skipped"

# Pins for Python 3.11+ on any platform (one version per package), with hashes; existing pins are kept
# unless a pyproject.toml range excludes them, or UPGRADE=1 asks for the newest releases. dev.txt is
# constrained to run.txt, and the layer (Python 3.12 on arm64, for `sam build`) to run.txt too, so
# `make run`, the tests and Lambda get the same versions (tests/unit/test_tooling.py checks it).
UV_COMPILE = $(UV) pip compile --quiet --universal --fork-strategy fewest --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
lock: ## regenerate requirements/*.txt and the layers' requirements.txt from pyproject.toml (UPGRADE=1: newest)
	test -x $(UV) || ($(PYTHON) -m venv $(TOOLS) && $(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION))
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra local -o requirements/run.txt
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra dev -c requirements/run.txt -o requirements/dev.txt
	$(UV_COMPILE) --no-deps requirements/reference.in -o requirements/reference.txt
	$(UV_COMPILE) requirements/installer.in -o requirements/installer.txt
	$(UV_COMPILE) requirements/sam.in -o requirements/sam.txt
	# The shared layer: the runtime dependencies for Lambda's Python 3.12 on arm64, without numpy (its
	# own layer, below) nor boto3 (the runtime has it). botocore (and urllib3, python-dateutil, six,
	# which only it needs) stay pinned here, since
	# aws-xray-sdk requires botocore and `sam build`'s hash-checking pip refuses any requirement that is
	# not pinned and hashed; `make build` then removes them from the built layer (localdev/layer.py).
	{ printf '%s\n' \
		'# Generated by `make lock` from pyproject.toml [project] dependencies, pinned to requirements/run.txt;' \
		'# do not edit. sam build installs these (Python 3.12, arm64) next to the abtest package. boto3 is' \
		'# left to the Lambda runtime; botocore is here because aws-xray-sdk requires it, and with hashes' \
		"# sam build's pip needs every requirement pinned and hashed; make build removes it from the layer." \
		'# numpy is not here: it has a layer of its own (layers/numpy), which only AssignmentsFunction gets.'; \
	  $(UV) pip compile --quiet --no-header --generate-hashes --python-version 3.12 \
		--python-platform aarch64-manylinux_2_28 -c requirements/run.txt \
		--no-emit-package boto3 --no-emit-package s3transfer --no-emit-package numpy pyproject.toml; \
	} > layers/abtest/requirements.txt.new
	mv layers/abtest/requirements.txt.new layers/abtest/requirements.txt
	# numpy's own layer (NumpyLayer, AssignmentsFunction only): numpy alone, at run.txt's version.
	{ printf '%s\n' \
		'# Generated by `make lock`: numpy at requirements/run.txt'"'"'s version, for Lambda'"'"'s Python 3.12 on' \
		'# arm64; do not edit. sam build installs it as NumpyLayer, which only AssignmentsFunction (the one' \
		'# function that ranks) gets; the shared layer (layers/abtest) leaves numpy out.'; \
	  printf 'numpy\n' | $(UV) pip compile --quiet --no-header --generate-hashes --python-version 3.12 \
		--python-platform aarch64-manylinux_2_28 -c requirements/run.txt -; \
	} > layers/numpy/requirements.txt.new
	mv layers/numpy/requirements.txt.new layers/numpy/requirements.txt

hooks: $(DEV_STAMP) ## install the git pre-commit hooks (.pre-commit-config.yaml) into this checkout
	$(BIN)/pre-commit install

test: lint typecheck browser ## everything CI runs: lint, types, unit + integration + e2e tests, coverage summary
	$(BIN)/python -m pytest --cov --cov-report=term

lint: $(DEV_STAMP) ## ruff, ruff format --check and cfn-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml

format: $(DEV_STAMP) ## fix what ruff can fix and reformat
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(DEV_STAMP) ## mypy --strict over the layer, the handlers and localdev
	$(BIN)/mypy

unit: $(DEV_STAMP) ## unit tests only (pure, sockets disabled)
	$(BIN)/python -m pytest tests/unit

integration: $(DEV_STAMP) ## integration tests only (handlers in-process, real PostgreSQL)
	$(BIN)/python -m pytest tests/integration

e2e: $(DEV_STAMP) browser ## end-to-end tests only (the local HTTP server over real HTTP; installs chromium)
	$(BIN)/python -m pytest tests/e2e

SAM_VENV ?= .aws-sam/venv
PY312_VERSION ?= 3.12.1
# The SAM CLI lives in its own venv, installed from its lock (requirements/sam.txt) without resolving.
SAM_STAMP := $(SAM_VENV)/.installed
$(SAM_STAMP): requirements/installer.txt requirements/sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip --quiet --disable-pip-version-check install --require-hashes --no-deps -r requirements/installer.txt
	$(SAM_VENV)/bin/python -m pip --quiet --disable-pip-version-check install --require-hashes --no-deps -r requirements/sam.txt
	$(SAM_VENV)/bin/python -m pip check
	touch $@

build: $(SAM_STAMP) ## sam build (arm64, no Docker) into .aws-sam/build, the layer trimmed, precompiled
	PYENV_VERSION=$(PY312_VERSION) SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --template template.yaml --build-dir .aws-sam/build --parallel
	# Without what the Lambda runtime provides (botocore & co.) and files unused at run time (localdev/layer.py).
	$(PYTHON) -m localdev.layer trim .aws-sam/build/AbTestLayer/python .aws-sam/build/NumpyLayer/python
	PYENV_VERSION=$(PY312_VERSION) python3.12 -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

clean: ## remove .venv, the uv tools venv and the caches
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache build *.egg-info .coverage .coverage.*

# ---- The real `sam local`: the `sam build` artifact in the Lambda runtime's environment, in Docker. ----
# Needs a running Docker daemon; `make run` and `make test` never do. SAM_LOCAL_IMAGE names the base image:
# empty builds localdev/samimage's offline one when missing; `pull` lets the SAM CLI pull AWS's own.
SAM_LOCAL_IMAGE ?=
SAM_API_PORT ?= 3001
sam-cli: $(SAM_STAMP) ## install the SAM CLI in its own venv (.aws-sam/venv) from requirements/sam.txt

sam-image: ## build the local Lambda python3.12 base image if missing (debootstrap + PyPI wheels)
	bash localdev/samimage/build.sh

sam-local: $(RUN_STAMP) sam-cli ## sam build, then `sam local invoke` for every file in events/, statuses checked
	image='$(SAM_LOCAL_IMAGE)'; test -n "$$image" || image="$$(bash localdev/samimage/build.sh)" || exit 1; \
	$(BIN)/python -m localdev.samlocal invoke-all --image "$$image"

sam-api: $(RUN_STAMP) sam-cli ## `sam local start-api` on 127.0.0.1:$(SAM_API_PORT)
	image='$(SAM_LOCAL_IMAGE)'; test -n "$$image" || image="$$(bash localdev/samimage/build.sh)" || exit 1; \
	$(BIN)/python -m localdev.samlocal start-api --image "$$image" --port $(SAM_API_PORT)

sam-api-check: $(RUN_STAMP) sam-cli ## the docs' curl walks against `sam local start-api` (started and stopped)
	image='$(SAM_LOCAL_IMAGE)'; test -n "$$image" || image="$$(bash localdev/samimage/build.sh)" || exit 1; \
	$(BIN)/python -m localdev.samlocal api-check --image "$$image" --port $(SAM_API_PORT)
