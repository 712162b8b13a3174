"""The sha256 of a file, with the standard library only.

`python -m training.teacher_gpu receive` checks pieces on the lent machine before the wheels the rest of
`training` imports (pydantic) are installed there, so this module must not import them; `training.backbone`
checks assembled weights with the same function.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 8 * 1024 * 1024


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the file's bytes, read in 8 MiB chunks (weights and bundles are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
