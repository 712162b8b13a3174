"""A folder that stands in for S3: `s3://BUCKET/KEY` <-> `<workspace>/s3/BUCKET/KEY`."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Iterable

S3_SCHEME = "s3://"


class ObjectStoreError(ValueError):
    """A URI that is not `s3://bucket/key`, or an object that does not exist."""


class ObjectStore:
    """Local object store rooted at `root` (usually `<workspace>/s3`)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def path(self, uri: str) -> Path:
        """Local path of an S3 URI (object or prefix); no I/O."""
        if not isinstance(uri, str) or not uri.startswith(S3_SCHEME):
            raise ObjectStoreError(f"not an S3 URI: {uri!r}")
        bucket, _, key = uri[len(S3_SCHEME):].partition("/")
        if not bucket:
            raise ObjectStoreError(f"S3 URI without a bucket: {uri!r}")
        parts = [p for p in key.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ObjectStoreError(f"S3 key may not contain '.' or '..' segments: {uri!r}")
        return self.root.joinpath(bucket, *parts)

    def uri(self, path: Path) -> str:
        """S3 URI of a path inside the store."""
        relative = Path(path).resolve().relative_to(self.root)
        return S3_SCHEME + relative.as_posix()

    def exists(self, uri: str) -> bool:
        return self.path(uri).exists()

    def is_empty(self, uri: str) -> bool:
        """True when nothing lies at or under the URI (S3 prefix semantics)."""
        target = self.path(uri)
        if target.is_file():
            return False
        return not target.is_dir() or not any(p.is_file() for p in target.rglob("*"))

    def ensure_prefix(self, uri: str) -> Path:
        """Make the prefix exist, empty if nothing lies there yet, so an S3Prefix input of it downloads
        as an empty folder instead of failing (S3 has no empty folders: on AWS such a prefix holds a
        placeholder object instead, see pipelines.aws.ensure_corrections_prefix)."""
        target = self.path(uri)
        if target.is_file():
            raise ObjectStoreError(f"{uri} is an object, not a prefix")
        target.mkdir(parents=True, exist_ok=True)
        return target

    def upload(self, local: Path, uri: str, replace: bool = False) -> str:
        """Copy a local file, or a folder's content, to the URI; returns the URI.

        With `replace`, whatever lay under the URI before is removed first (a job output
        replaces the previous object set of its prefix rather than merging with it)."""
        local = Path(local)
        target = self.path(uri)
        if replace and target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        if local.is_dir():
            shutil.copytree(local, target, dirs_exist_ok=True)
        elif local.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local, target)
        else:
            raise ObjectStoreError(f"nothing to upload at {local}")
        return uri

    def download(self, uri: str, local: Path) -> Path:
        """Copy an object into the folder `local`, or a prefix's objects under it (S3Prefix)."""
        source = self.path(uri)
        local = Path(local)
        local.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            shutil.copy2(source, local / source.name)
        elif source.is_dir():
            shutil.copytree(source, local, dirs_exist_ok=True)
        else:
            raise ObjectStoreError(f"no object or prefix at {uri} (looked in {source})")
        return local

    def copy(self, source_uri: str, target_uri: str) -> str:
        source = self.path(source_uri)
        if not source.exists():
            raise ObjectStoreError(f"no object or prefix at {source_uri}")
        return self.upload(source, target_uri)

    def read_text(self, uri: str) -> str:
        path = self.path(uri)
        if not path.is_file():
            raise ObjectStoreError(f"no object at {uri} (looked in {path})")
        return path.read_text(encoding="utf-8")

    def content_hash(self, uri: str, ignored_folders: Iterable[str] = ()) -> str:
        """SHA-256 over the relative names and bytes of everything at or under the URI (objects under a
        folder named in `ignored_folders` left out)."""
        return hash_tree(self.path(uri), ignored_folders)


def hash_tree(path: Path, ignored_folders: Iterable[str] = ()) -> str:
    """Content hash of a file or folder (names relative to it, then bytes), '' when absent; files under a
    sub-folder named in `ignored_folders` are left out."""
    path = Path(path)
    if not path.exists():
        return ""
    ignored = set(ignored_folders)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not ignored.intersection(p.relative_to(path).parts[:-1]))
    for file in files:
        digest.update((file.relative_to(path).as_posix() if file != path else file.name).encode())
        digest.update(b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
