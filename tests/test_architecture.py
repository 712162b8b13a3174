"""Boundaries you can check: the layering the README promises, no import cycles, ruff clean.

The contracts live in `.importlinter` at the repository root (import-linter: a `layers` contract,
an `acyclic_siblings` contract, and a `forbidden` one keeping the web framework out of the monitor
and the capture readers); these tests run them with the packages that exist today, so
the optional layers (operations, infrastructure) start being checked the day their package
lands. Each contract is also run once on a small synthetic project that breaks it, so a test
that passes means the contract looked.
"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / ".importlinter"
LAYERED = ("processing", "training", "inference", "monitoring", "operations", "pipelines", "infrastructure", "benchmarks")
"""Every top-level package of the project, each placed in `.importlinter`'s layers."""
NOT_PACKAGES = {"tests", "containers", "docs", "build", "dist"}
"""Top-level folders that hold no importable project code (tests/ imports anything)."""


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed: pip install the test extras (import-linter, ruff)")
    return found


def _top_level_packages(root: Path) -> list[str]:
    """Folders directly under root that hold Python modules (namespace packages such as benchmarks/ included)."""
    return sorted(
        entry.name for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith((".", "_")) and entry.name not in NOT_PACKAGES
        and any(entry.glob("*.py"))
    )


def _lint_imports(root: Path, packages: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the repository's contracts over `packages` (the existing subset of LAYERED) under root."""
    config = configparser.ConfigParser()
    config.read(CONTRACTS, encoding="utf-8")
    listed = "\n" + "\n".join(packages)
    config["importlinter"]["root_packages"] = listed
    for section in config.sections():
        if config[section].get("type") == "acyclic_siblings":
            config[section]["ancestors"] = listed
    effective = tmp_path / "importlinter.ini"
    with effective.open("w", encoding="utf-8") as handle:
        config.write(handle)
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([_bin("lint-imports"), "--config", str(effective), "--no-cache", "--no-logo"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_every_top_level_package_has_a_place_in_the_layers():
    packages = _top_level_packages(REPO)
    assert set(packages) <= set(LAYERED), (
        f"{sorted(set(packages) - set(LAYERED))}: a new top-level package needs a layer in .importlinter "
        "and a place in LAYERED")
    layers = configparser.ConfigParser()
    layers.read(CONTRACTS, encoding="utf-8")
    declared = layers["importlinter:contract:layers"]["layers"]
    for name in LAYERED:
        assert name in declared, f"{name} has no layer in .importlinter"


def test_layers_hold_and_no_package_has_an_import_cycle(tmp_path):
    packages = [name for name in LAYERED if name in _top_level_packages(REPO)]
    result = _lint_imports(REPO, packages, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_contracts_catch_an_upward_import_a_cycle_and_the_web_framework_in_the_monitor(tmp_path):
    project = tmp_path / "project"
    _write(project, {
        "processing/__init__.py": "",
        "processing/reader.py": "import training.train\n",  # a lower layer importing a higher one
        "training/__init__.py": "",
        "training/train.py": "",
        "inference/__init__.py": "",
        "inference/app.py": "import fastapi\nfrom inference.capture import CaptureWriter\n",
        "inference/capture.py": "def read():\n    from inference.app import parse\n",  # a cycle, even lazily
        "inference/codec.py": "",
        "monitoring/__init__.py": "",
        "monitoring/reader.py": "from inference.app import parse\n",  # the web framework, indirectly
        "pipelines/__init__.py": "import processing, training, inference, monitoring\n",
        "benchmarks/speed.py": "import pipelines\n",
        "operations/__init__.py": "",
        "operations/loop.py": "import pipelines\n",  # an optional layer, checked once it exists
    })
    packages = ["processing", "training", "inference", "monitoring", "operations", "pipelines", "benchmarks"]
    result = _lint_imports(project, packages, tmp_path)
    assert result.returncode != 0
    assert "processing.reader -> training.train" in result.stdout
    assert ".capture -> .app" in result.stdout or ".app -> .capture" in result.stdout
    assert "operations.loop -> pipelines" in result.stdout
    assert "monitoring.reader -> inference.app" in result.stdout and "inference.app -> fastapi" in result.stdout
    assert "3 broken" in result.stdout


def test_ruff_check_passes():
    result = subprocess.run([_bin("ruff"), "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
