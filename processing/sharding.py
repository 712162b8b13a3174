"""Which input files this processing instance reads, and who it is among the instances.

On SageMaker with `S3DataDistributionType=ShardedByS3Key` each instance already receives
its own subset of files: it reads all it sees (`file_sharding="none"`). Locally, or with
`FullyReplicated` input, `--shard-index/--shard-count` pick files by a stable hash of their
path relative to the input folder (`file_sharding="by_hash"`), so the same file always goes
to the same shard whatever the machine.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")


@dataclass(frozen=True)
class ShardSpec:
    index: int
    count: int
    file_sharding: str
    """"by_hash": pick this shard's files from all visible; "none": the platform already did."""

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is not in [0, {self.count})")
        if self.file_sharding not in ("by_hash", "none"):
            raise ValueError(f"file_sharding must be 'by_hash' or 'none', got {self.file_sharding!r}")


def detect_shard(index: Optional[int], count: Optional[int], resource_config: Path = RESOURCE_CONFIG) -> ShardSpec:
    """Explicit arguments win; else SageMaker's resourceconfig.json / SM_CURRENT_HOST; else one shard."""
    if index is not None or count is not None:
        return ShardSpec(index or 0, count or 1, "by_hash")
    hosts: list[str] = []
    current = os.environ.get("SM_CURRENT_HOST")
    if resource_config.is_file():
        config = json.loads(resource_config.read_text(encoding="utf-8"))
        hosts = sorted(config.get("hosts", []))
        current = config.get("current_host", current)
    elif os.environ.get("SM_HOSTS"):
        hosts = sorted(json.loads(os.environ["SM_HOSTS"]))
    if current and current in hosts and len(hosts) > 1:
        return ShardSpec(hosts.index(current), len(hosts), "none")
    return ShardSpec(0, 1, "none")


def owning_shard(key: str, count: int) -> int:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def files_for_shard(files: list[Path], root: Path, shard: ShardSpec) -> list[Path]:
    if shard.file_sharding == "none" or shard.count == 1:
        return files
    base = root if root.is_dir() else root.parent
    return [f for f in files if owning_shard(f.relative_to(base).as_posix(), shard.count) == shard.index]
