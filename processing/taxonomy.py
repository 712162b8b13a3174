"""The versioned feedback taxonomy: the one place label names and their order are defined.

Model heads, adapters, alerts and playbooks all index labels through this module, so a
label added here reaches every layer; nothing else may hard-code a label list.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

TAXONOMY_DIR = Path(__file__).resolve().parent / "taxonomy"
CURRENT_VERSION = "1"


@dataclass(frozen=True)
class Aspect:
    name: str
    owner_team: str
    subtopics: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Taxonomy:
    version: str
    sentiments: tuple[str, ...]
    intents: tuple[str, ...]
    aspects: tuple[Aspect, ...]
    flags: tuple[str, ...]
    remediation_statuses: tuple[str, ...]
    descriptions: dict[str, str]
    owners: dict[str, str] = field(default_factory=dict)
    """Team owning each intent and flag (`owner_team` in the file; aspects carry theirs on Aspect)."""
    immediate_flags: tuple[str, ...] = ()
    """Flags marked `"escalation": "immediate"`: a single item raises an alert at once."""

    @cached_property  # checked for every record's aspects during validation
    def aspect_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.aspects)

    def aspect(self, name: str) -> Aspect:
        for aspect in self.aspects:
            if aspect.name == name:
                return aspect
        raise KeyError(f"unknown aspect {name!r}; taxonomy v{self.version} has {self.aspect_names}")

    def owner_of(self, aspect_name: str) -> str:
        return self.aspect(aspect_name).owner_team

    def signal_owner(self, kind: str, name: str) -> str | None:
        """Owner team of an aspect, intent or flag (`kind`), None when the taxonomy names none."""
        if kind == "aspect":
            return self.owner_of(name)
        return self.owners.get(name)

    def label_maps(self) -> dict[str, list[str]]:
        """Ordered label lists per task, as stored next to a trained model."""
        return {
            "sentiment": list(self.sentiments),
            "intent": list(self.intents),
            "aspects": list(self.aspect_names),
        }


def taxonomy_path(version: str) -> Path:
    return TAXONOMY_DIR / f"taxonomy_v{version}.json"


@lru_cache(maxsize=None)
def load_taxonomy(version: str = CURRENT_VERSION) -> Taxonomy:
    path = taxonomy_path(version)
    if not path.exists():
        known = sorted(p.stem.removeprefix("taxonomy_v") for p in TAXONOMY_DIR.glob("taxonomy_v*.json"))
        raise ValueError(f"taxonomy version {version!r} not found; known versions: {known}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    descriptions = {item["name"]: item["description"] for key in ("intents", "aspects", "flags") for item in raw[key]}
    return Taxonomy(
        version=str(raw["version"]),
        sentiments=tuple(raw["sentiments"]),
        intents=tuple(item["name"] for item in raw["intents"]),
        aspects=tuple(
            Aspect(a["name"], a["owner_team"], tuple(a["subtopics"]), a["description"]) for a in raw["aspects"]
        ),
        flags=tuple(item["name"] for item in raw["flags"]),
        remediation_statuses=tuple(raw["remediation_statuses"]),
        descriptions=descriptions,
        owners={item["name"]: item["owner_team"] for key in ("intents", "flags") for item in raw[key]
                if item.get("owner_team")},
        immediate_flags=tuple(item["name"] for item in raw["flags"] if item.get("escalation") == "immediate"),
    )
