"""Lambda code packages built from the repository's own modules, without Docker.

A handler's package holds exactly the repository modules its module imports, transitively
(those a fresh interpreter loads when it imports the handler's module), plus the data files those
packages declare in setup.py's package_data, plus the wheels of `PACKAGED_DISTRIBUTIONS` it loads
(pydantic: every configuration section is validated), installed by pip for the Lambda platform at
the versions installed here. Any other third-party import is refused: a Lambda handler may only
need those, what the Lambda Python runtime ships (boto3 / botocore) and the standard library;
tests/test_infrastructure.py imports each packaged handler with nothing else importable to prove it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_PACKAGES = ("processing", "training", "inference", "monitoring", "operations", "pipelines")
"""Top-level packages of this repository (infrastructure/ itself is never packaged)."""
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
"""Third-party packages the AWS Lambda Python runtime provides."""


PACKAGED_DISTRIBUTIONS = ("pydantic", "pydantic-core", "typing-extensions", "annotated-types", "typing-inspection")
"""Third-party distributions a handler may need that the runtime lacks: the settings machinery's (processing.settings)."""
LAMBDA_PLATFORM = "manylinux2014_x86_64"
"""Wheels are installed for x86_64 Lambda functions (the default architecture)."""


class PackagingError(RuntimeError):
    """A handler cannot be packaged, or its package does not import on the Lambda runtime."""


@dataclass(frozen=True)
class LambdaPackage:
    handler: str
    """`module.function`, e.g. `inference.deploy.handler`."""
    directory: Path
    """Folder to hand to `lambda.Code.from_asset`."""
    modules: tuple[str, ...]
    """Repository modules copied (dotted names), sorted."""


def handler_module(handler: str) -> str:
    module, _, function = handler.rpartition(".")
    if not module or not function:
        raise ValueError(f"handler {handler!r} must look like package.module.function")
    return module


_LOADED_MODULES = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps({name: getattr(module, "__file__", None) for name, module in sys.modules.items()}))
"""

_ISOLATED_IMPORT = """
import importlib, importlib.abc, sys
allowed = set(sys.stdlib_module_names) | set(sys.argv[3].split(","))
package_root = sys.argv[1]


class OnlyRuntimeModules(importlib.abc.MetaPathFinder):
    # Refuses every top-level import that the Lambda runtime would not have.
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        # _sysconfigdata_*: the interpreter's own build settings (stdlib, though not in stdlib_module_names)
        if top in allowed or top in sys.builtin_module_names or top.startswith("_sysconfigdata"):
            return None
        import os
        if os.path.exists(os.path.join(package_root, top)) or os.path.exists(os.path.join(package_root, top + ".py")):
            return None
        raise ImportError(f"{name} is not in the Lambda package nor in the Lambda runtime")


sys.meta_path.insert(0, OnlyRuntimeModules())
sys.path = [package_root] + [p for p in sys.path if "site-packages" in p or "dist-packages" in p or p.startswith(sys.base_prefix)]
module_name, _, function = sys.argv[2].rpartition(".")
module = importlib.import_module(module_name)
if not callable(getattr(module, function, None)):
    raise SystemExit(f"{sys.argv[2]} is not a function")
assert module.__file__.startswith(package_root), module.__file__
print(module.__file__)
"""


def loaded_modules(module: str, repo_root: Path = REPO_ROOT) -> dict[str, str | None]:
    """Dotted name -> file of every module a fresh interpreter loads when it imports `module`."""
    result = subprocess.run([sys.executable, "-c", _LOADED_MODULES, module], cwd=repo_root, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(repo_root)}, check=False)
    if result.returncode != 0:
        raise PackagingError(f"importing {module} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def packaged_distributions(loaded: dict[str, str | None]) -> dict[str, str]:
    """Distribution -> installed version, for the PACKAGED_DISTRIBUTIONS whose modules were loaded."""
    from importlib import metadata

    by_module = metadata.packages_distributions()
    found = {}
    for top in {name.split(".")[0] for name in loaded}:
        for distribution in by_module.get(top, []):
            normalised = distribution.lower().replace("_", "-")
            if normalised in PACKAGED_DISTRIBUTIONS:
                found[normalised] = metadata.version(distribution)
    return dict(sorted(found.items()))


def install_distributions(distributions: dict[str, str], target: Path) -> None:
    """pip-install exactly these wheels (no dependencies, no bytecode) for the Lambda platform into target."""
    if not distributions:
        return
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--no-compile", "--only-binary=:all:", "--platform", LAMBDA_PLATFORM, "--implementation", "cp",
               "--python-version", python_version, "--target", str(target),
               *[f"{name}=={version}" for name, version in distributions.items()]]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagingError(f"installing {distributions} for the Lambda runtime failed:\n{result.stderr[-2000:]}")


def repository_modules(module: str, loaded: dict[str, str | None], repo_root: Path = REPO_ROOT) -> dict[str, Path]:
    """Dotted name -> source file of every repository module among `loaded` (loaded_modules(module)).

    The import ran in a fresh interpreter whose path starts with repo_root, so what it loaded
    is exactly what the handler loads on a cold start (modules imported lazily inside
    functions that the handler calls must only be standard library or runtime-provided).
    """
    found: dict[str, Path] = {}
    for name, file in loaded.items():
        if name.split(".")[0] in REPO_PACKAGES and file:
            path = Path(file).resolve()
            if repo_root.resolve() in path.parents:
                found[name] = path
    if module not in found:
        raise PackagingError(f"{module} was not loaded from {repo_root}")
    return found


def check_handler_isolated(package: LambdaPackage) -> None:
    """Import the handler from its package with only the standard library and the Lambda
    runtime's packages importable; raises PackagingError naming the missing import."""
    result = subprocess.run(
        # -B: no __pycache__ written into the package (its asset hash must not change between syntheses)
        [sys.executable, "-I", "-B", "-c", _ISOLATED_IMPORT, str(package.directory.resolve()), package.handler,
         ",".join(RUNTIME_PROVIDED)],
        capture_output=True, text=True, check=False, cwd=package.directory,
    )
    if result.returncode != 0:
        raise PackagingError(f"{package.handler} does not import from its Lambda package alone:\n{result.stderr[-2000:]}")


def setup_package_data(repo_root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """setup.py's package_data (package -> glob patterns), read by running setup.py with setup() captured."""
    import runpy
    from unittest import mock

    captured: dict = {}
    with mock.patch("setuptools.setup", lambda **kwargs: captured.update(kwargs)):
        runpy.run_path(str(Path(repo_root) / "setup.py"), run_name="__main__")
    return dict(captured.get("package_data") or {})


def build_lambda_package(handler: str, out_dir: Path, package_data: dict[str, list[str]] | None = None,
                         repo_root: Path = REPO_ROOT) -> LambdaPackage:
    """Copy the modules `handler` needs (and the data files setup.py declares for the packages they belong to:
    `package_data`, default setup_package_data()) into out_dir/<module>."""
    module = handler_module(handler)
    if package_data is None:
        package_data = setup_package_data(repo_root)
    loaded = loaded_modules(module, repo_root)  # one import of the handler serves both lists below
    modules = repository_modules(module, loaded, repo_root)
    target = Path(out_dir) / module.replace(".", "-")
    if target.exists():
        shutil.rmtree(target)
    install_distributions(packaged_distributions(loaded), target)
    for source in modules.values():
        relative = source.resolve().relative_to(repo_root)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    # Packages (dotted) whose modules were copied: package_data's keys are dotted package names.
    packages = {name.rpartition(".")[0] if Path(file).name != "__init__.py" else name for name, file in modules.items()}
    for package, patterns in package_data.items():
        if package not in packages:
            continue
        for pattern in patterns:
            for source in sorted((repo_root / package.replace(".", "/")).glob(pattern)):
                destination = target / source.relative_to(repo_root)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
    return LambdaPackage(handler=handler, directory=target, modules=tuple(sorted(modules)))
