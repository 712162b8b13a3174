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

.PHONY: install run test benchmarks clean

$(BIN)/fbrain: setup.py requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(BIN)/fbrain

install: $(BIN)/fbrain

run: install
	$(BIN)/fbrain pipeline run --local --workspace $(WORKSPACE) --param ModelApprovalStatus=Approved
	$(BIN)/fbrain demo --workspace $(WORKSPACE)

test: install
	$(BIN)/python -m pytest -q tests

# The CPU benchmarks that need no shared data (each prints its own baseline ratio); the model-quality
# benchmark trains for an hour on ../shared data: run `python -m benchmarks.model_quality` by hand.
benchmarks: install
	$(BIN)/python benchmarks/training_throughput.py
	$(BIN)/python benchmarks/processing_throughput.py --generated-rows 300000
	$(BIN)/python benchmarks/serving_latency.py

clean:
	rm -rf $(WORKSPACE) .pytest_cache
