# Entry points for a newcomer: `make run` (the API on http://127.0.0.1:3000) and `make test`.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 3000

.PHONY: install run migrate seed demo browser openapi invoke build test lint format typecheck unit integration e2e clean

$(STAMP): pyproject.toml layers/abtest/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# Test-only reference engine; it pins numpy<2, which the parts the tests use do not need.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'gbstats==0.8.0'
	rm -rf build *.egg-info
	touch $@

install: $(STAMP)

run: $(STAMP) ## serve the whole API locally on 127.0.0.1:$(PORT)
	$(BIN)/python -m localdev serve --host 127.0.0.1 --port $(PORT)

migrate: $(STAMP) ## apply the SQL migrations to the local database
	$(BIN)/python -m localdev migrate

openapi: $(STAMP) ## regenerate openapi.json from the handlers
	$(BIN)/python -m localdev openapi

seed: $(STAMP) ## (re)load the reproducible demo catalog (and create the demo experiment if missing)
	$(BIN)/python -m localdev seed

demo: $(STAMP) ## create the demo experiment (8 days of simulated traffic) unless it exists; prints its report URL
	$(BIN)/python -m localdev demo --port $(PORT)

# The report's browser test drives Debian's headless chromium (never a downloaded browser).
browser: ## install chromium and chromium-driver from Debian when missing (needs root)
	command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) || \
	  echo "chromium could not be installed: the browser test will be skipped"

test: lint typecheck browser ## everything CI runs: lint, types, unit + integration + e2e tests
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

e2e: $(STAMP) browser
	$(BIN)/python -m pytest tests/e2e

SAM_VENV ?= .aws-sam/venv
PY312_VERSION ?= 3.12.1
build: ## sam build (arm64, no Docker) into .aws-sam/build, precompiled
	test -x $(SAM_VENV)/bin/sam || ($(PYTHON) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install --quiet aws-sam-cli)
	PYENV_VERSION=$(PY312_VERSION) SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --template template.yaml --build-dir .aws-sam/build --parallel
	PYENV_VERSION=$(PY312_VERSION) python3.12 -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

invoke: $(STAMP) ## like `sam local invoke`: make invoke FUNCTION=ExperimentsFunction EVENT=events/list_experiments.json
	$(BIN)/python -m localdev invoke $(FUNCTION) $(EVENT)

# ---- The real `sam local`: the `sam build` artifact in the Lambda runtime's environment, in Docker. ----
# Needs a running Docker daemon; `make run` and `make test` never do. SAM_LOCAL_IMAGE names the base image:
# empty builds localdev/samimage's offline one when missing; `pull` lets the SAM CLI pull AWS's own.
SAM_LOCAL_IMAGE ?=
SAM_API_PORT ?= 3001
.PHONY: sam-cli sam-image sam-local sam-api sam-api-check
sam-cli:
	test -x $(SAM_VENV)/bin/sam || ($(PYTHON) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install --quiet aws-sam-cli)

sam-image: ## build the local Lambda python3.12 base image if missing (debootstrap + PyPI wheels)
	bash localdev/samimage/build.sh

sam-local: $(STAMP) sam-cli ## sam build, then `sam local invoke` for every file in events/, statuses checked
	image='$(SAM_LOCAL_IMAGE)'; test -n "$$image" || image="$$(bash localdev/samimage/build.sh)" || exit 1; \
	$(BIN)/python -m localdev.samlocal invoke-all --image "$$image"

sam-api: $(STAMP) sam-cli ## `sam local start-api` on 127.0.0.1:$(SAM_API_PORT)
	image='$(SAM_LOCAL_IMAGE)'; test -n "$$image" || image="$$(bash localdev/samimage/build.sh)" || exit 1; \
	$(BIN)/python -m localdev.samlocal start-api --image "$$image" --port $(SAM_API_PORT)

sam-api-check: $(STAMP) sam-cli ## the README's curl walk against `sam local start-api` (started and stopped)
	image='$(SAM_LOCAL_IMAGE)'; test -n "$$image" || image="$$(bash localdev/samimage/build.sh)" || exit 1; \
	$(BIN)/python -m localdev.samlocal api-check --image "$$image" --port $(SAM_API_PORT)
