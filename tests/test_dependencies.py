"""Dependencies per role: every import is declared, each role's lock pins it, each image runs
with only its role installed.

setup.py declares one extra per role (process, train, serve, loop, pipeline, infra) and `dev`
(all of them plus the test tools); requirements/<role>.lock is the resolved set with hashes
(`make lock`). The image checks run the image's entry points in a subprocess (`python -S`) whose only packages are
the installed files of the distributions that the image's lock pins.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
IMAGE_ROLES = {"processing": "process", "training": "train", "inference": "serve"}
"""Image (containers/<kind>) -> the setup.py extra and lock it installs."""
NOT_IN_SERVING = {"torch", "mlflow", "mlflow-skinny", "sagemaker", "sagemaker-core", "transformers",
                  "flask", "gunicorn", "alembic", "sqlalchemy"}
"""What the inference image must not carry (issue 14: no torch, no MLflow server, no SageMaker SDK)."""


def _setup_arguments() -> dict:
    """The keyword arguments setup.py passes to setuptools.setup (setup.py is run, not installed)."""
    captured: dict = {}
    import runpy

    with mock.patch("setuptools.setup", lambda **kwargs: captured.update(kwargs)):
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    return captured


SETUP = _setup_arguments()
EXTRAS: dict[str, list[str]] = SETUP["extras_require"]
COMMON: list[str] = SETUP["install_requires"]


def _role_requirements(role: str) -> list[Requirement]:
    return [Requirement(text) for text in COMMON + EXTRAS[role]]


def _read_lock(role: str) -> dict[str, tuple[Version, list[str]]]:
    """requirements/<role>.lock -> {distribution: (version, hashes)}."""
    text = (REQUIREMENTS / f"{role}.lock").read_text(encoding="utf-8")
    pins: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            pins[canonicalize_name(match.group(1))] = (Version(match.group(2)), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return pins


# ------------------------------------------------------------------ every import is declared
SKIPPED_FOLDERS = {".git", ".venv", "build", "dist", "node_modules", "cdk.out", ".fbrain"}
LOCAL_TOP_LEVEL = {path.name for path in REPO.iterdir() if path.is_dir() and (path / "__init__.py").exists()} | {
    path.stem for path in REPO.rglob("*.py") if not SKIPPED_FOLDERS & set(path.relative_to(REPO).parts)} | {
    "tests", "benchmarks"}
"""The project's own packages and script modules (tests import benchmarks/*.py by path)."""


def _project_files() -> list[Path]:
    """The project's Python files; setup.py is build-time (setuptools comes with the build)."""
    return [path for path in REPO.rglob("*.py")
            if not SKIPPED_FOLDERS & set(path.relative_to(REPO).parts) and path != REPO / "setup.py"]


def _imported_top_level_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - LOCAL_TOP_LEVEL - {"__future__"}


def _declared_distributions(owners: dict[str, list[str]]) -> set[str]:
    """Declared names, and the parts of declared meta-packages (`sagemaker` ships no module of
    its own: its modules come from sagemaker-core, -mlops, -serve and -train, which it requires)."""
    declared = {canonicalize_name(Requirement(text).name) for text in COMMON + EXTRAS["dev"]}
    shipping = {canonicalize_name(name) for names in owners.values() for name in names}
    for name in list(declared - shipping):
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:  # declared, not installed here: no parts to add
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None:
                declared.add(canonicalize_name(requirement.name))
    return declared


def test_every_imported_distribution_is_declared_in_setup_py():
    owners = importlib.metadata.packages_distributions()
    declared = _declared_distributions(owners)
    undeclared: dict[str, set[str]] = {}
    for path in _project_files():
        for module in _imported_top_level_modules(path):
            distributions = {canonicalize_name(name) for name in owners.get(module, [])}
            if not distributions & declared:
                undeclared.setdefault(module if not distributions else ", ".join(sorted(distributions)), set()).add(
                    str(path.relative_to(REPO)))
    assert not undeclared, f"imported but not declared in setup.py (module or distribution -> files): {undeclared}"


def test_dev_extra_is_every_role_plus_the_tools():
    roles = {"process", "train", "serve", "loop", "pipeline", "infra"}
    assert roles < set(EXTRAS)
    dev = set(EXTRAS["dev"])
    for role in roles:
        assert set(EXTRAS[role]) <= dev, f"dev misses {sorted(set(EXTRAS[role]) - dev)} of {role}"


def test_libraries_whose_internals_we_use_are_pinned_exactly():
    for text in COMMON + EXTRAS["dev"]:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) in {"datasketch", "langdetect", "torch", "moto", "sagemaker"}:
            assert str(requirement.specifier).startswith("=="), f"{text} must be an exact pin"


# ------------------------------------------------------------------ the locks
@pytest.mark.parametrize("role", ["dev", "process", "train", "serve", "loop", "pipeline", "infra"])
def test_each_role_lock_pins_every_requirement_with_hashes(role):
    pins = _read_lock(role)
    dev = _read_lock("dev")
    for requirement in _role_requirements(role):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements/{role}.lock does not pin {requirement}"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), f"{role}.lock: {name}=={version} violates {requirement}"
    for name, (version, hashes) in pins.items():
        assert hashes, f"{role}.lock: {name} has no hash"
        assert dev[name][0] == version, f"{role}.lock pins {name}=={version}, dev.lock {dev[name][0]}"


def test_torch_is_the_cpu_wheel_everywhere_and_absent_from_serving():
    for role in ("dev", "process", "train"):
        assert str(_read_lock(role)["torch"][0]) == "2.13.0+cpu", role
    serving = set(_read_lock("serve"))
    assert not serving & NOT_IN_SERVING, f"the inference image would carry {sorted(serving & NOT_IN_SERVING)}"


# ------------------------------------------------------------------ images run with their role only
def _site_packages_of(role: str, root: Path) -> Path:
    """A site-packages folder that holds only the installed files of the distributions that
    requirements/<role>.lock pins (one symlink per file, from each distribution's RECORD)."""
    target = root / role
    if target.exists():
        return target
    pinned = set(_read_lock(role))
    missing = []
    for name in sorted(pinned):
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        base = Path(distribution.locate_file(""))
        for file in distribution.files or []:
            if file.parts[0] == ".." or file.suffix == ".pyc":
                continue
            link = target / file
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(base / file)
    # The lock's setup tools (pip, setuptools) are not needed at run time; anything else is.
    assert not set(missing) - {"pip", "setuptools", "wheel"}, f"not installed here, cannot emulate {role}: {missing}"
    return target


def _run_with_only(role: str, root: Path, *arguments: str) -> subprocess.Popen:
    """python -S (no site-packages) with only the role's distributions on the path, in the repository."""
    environment = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME"}}
    environment["PYTHONPATH"] = str(_site_packages_of(role, root))
    return subprocess.Popen([sys.executable, "-S", *arguments], cwd=REPO, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _image_modules(kind: str) -> list[str]:
    text = (REPO / "containers" / kind / "Dockerfile").read_text(encoding="utf-8")
    return re.search(r'org\.feedback-brain\.modules="([^"]+)"', text).group(1).split()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def role_site_packages(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("role_site_packages")


def test_a_role_without_torch_cannot_import_it(role_site_packages):
    process = _run_with_only("serve", role_site_packages, "-c", "import onnxruntime, tokenizers, fastapi; import torch")
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "No module named 'torch'" in output, output[-2000:]


@pytest.mark.parametrize("kind", sorted(IMAGE_ROLES))
def test_each_image_runs_with_only_its_role_installed(kind, tiny_model_dir, role_site_packages):
    role = IMAGE_ROLES[kind]
    modules = _image_modules(kind)
    process = _run_with_only(role, role_site_packages, "-c", "import " + ", ".join(modules))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, f"{kind} image ({role}.lock) cannot import {modules}:\n{output[-3000:]}"
    if kind != "inference":
        return
    # The endpoint itself: `python3 -m inference.serve` (what `serve` execs), a real request.
    port = _free_port()
    server = _run_with_only(role, role_site_packages, "-m", "inference.serve", "serve", "--model-dir", str(tiny_model_dir),
                            "--host", "127.0.0.1", "--port", str(port), "--runtime", "onnx-int8")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"the server exited:\n{server.stdout.read()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /ping in 120 s"
            time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"instances": [{"text": "The parcel arrived broken, I want a refund"}]}).encode())
        with urllib.request.urlopen(request, timeout=30) as answer:
            predictions = json.load(answer)["predictions"]
        assert len(predictions) == 1 and {"sentiment", "intent"} <= set(predictions[0])
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.mark.slow
def test_loop_image_handlers_import_with_only_the_loop_role(role_site_packages):
    """containers/loop/Dockerfile installs requirements/loop.lock only: each Lambda handler it runs imports so."""
    from infrastructure.stacks.ingest import CONSUME_HANDLER
    from infrastructure.stacks.operations import DETECT_HANDLER, MAINTAIN_HANDLER, OPERATIONS_API_HANDLER

    checks = "; ".join(f"import {module}; assert callable({module}.{function})" for module, _, function in (
        handler.rpartition(".") for handler in (CONSUME_HANDLER, DETECT_HANDLER, OPERATIONS_API_HANDLER, MAINTAIN_HANDLER)))
    process = _run_with_only("loop", role_site_packages, "-c", checks)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, f"loop image (loop.lock) cannot import its handlers:\n{output[-3000:]}"
