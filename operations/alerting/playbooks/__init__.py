"""Playbooks: versioned, schema-validated JSON (one file per playbook in this folder, `playbook.schema.json`).

Each names the signals it answers (machine-readable detection criteria with thresholds the detector
uses), likely causes, diagnostic steps, actions, owner, escalation, stop conditions and the validation
check the incident workflow evaluates on later data. Loading fails loudly on a file that breaks the
schema, on a signal claimed twice, and on an owner that differs from the taxonomy's owner of its signals.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from jsonschema import Draft202012Validator

from operations.alerting.detection import Thresholds, signal_owner
from operations.alerting.config import AlertingConfig
from processing.taxonomy import Taxonomy, load_taxonomy

BUNDLED_DIR = Path(__file__).resolve().parent
SCHEMA_FILE = "playbook.schema.json"


class PlaybookError(ValueError):
    """A playbook file that cannot be used; the message names the file and the problem."""


@dataclass
class Playbooks:
    by_id: dict[str, dict[str, Any]]
    by_signal: dict[str, dict[str, Any]]

    def for_signal(self, signal: str) -> Optional[dict[str, Any]]:
        return self.by_signal.get(signal)

    def thresholds(self, defaults: Thresholds) -> dict[str, Thresholds]:
        """Detection thresholds per signal from the playbooks' criteria (config defaults fill the gaps)."""
        out = {}
        for signal, book in self.by_signal.items():
            criteria = book["detection"]
            if criteria["test"] == "binomial_share":
                out[signal] = Thresholds(criteria.get("min_count", defaults.min_count),
                                         criteria.get("min_lift", defaults.min_lift),
                                         criteria.get("max_p_value", defaults.max_p_value))
        return out

    def reference(self, signal: str) -> Optional[dict[str, Any]]:
        """What an alert carries: the playbook's id, version, title and steps."""
        book = self.for_signal(signal)
        if book is None:
            return None
        keys = ("id", "version", "title", "owner", "likely_causes", "diagnostic_steps", "actions", "escalation",
                "stop_conditions", "validation", "detection")
        return {key: book[key] for key in keys}


def load_playbooks(config: AlertingConfig, directory: Optional[Path] = None,
                   taxonomy: Optional[Taxonomy] = None) -> Playbooks:
    directory = Path(directory or config.playbooks_dir or BUNDLED_DIR)
    taxonomy = taxonomy or load_taxonomy()
    schema_path = BUNDLED_DIR / SCHEMA_FILE
    validator = Draft202012Validator(json.loads(schema_path.read_text(encoding="utf-8")))
    by_id: dict[str, dict[str, Any]] = {}
    by_signal: dict[str, dict[str, Any]] = {}
    files = sorted(p for p in directory.glob("*.json") if p.name != SCHEMA_FILE)
    if not files:
        raise PlaybookError(f"no playbooks (*.json) in {directory}")
    for path in files:
        try:
            book = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PlaybookError(f"{path.name}: invalid JSON: {exc}") from None
        errors = sorted(validator.iter_errors(book), key=lambda e: list(e.path))
        if errors:
            raise PlaybookError(f"{path.name}: " + "; ".join(
                f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5]))
        if book["id"] in by_id:
            raise PlaybookError(f"{path.name}: playbook id {book['id']!r} is defined twice")
        if book["taxonomy_version"] != taxonomy.version:
            raise PlaybookError(f"{path.name}: written for taxonomy v{book['taxonomy_version']}, "
                                f"the loop runs v{taxonomy.version}")
        for signal in book["detection"]["signals"]:
            if signal in by_signal:
                raise PlaybookError(f"{path.name}: signal {signal!r} already belongs to {by_signal[signal]['id']!r}")
            try:
                owner = signal_owner(signal, taxonomy, config)
            except (KeyError, ValueError) as exc:
                raise PlaybookError(f"{path.name}: {exc}") from None
            if owner != book["owner"]:
                raise PlaybookError(f"{path.name}: owner {book['owner']!r} but the taxonomy routes {signal!r} to {owner!r}")
            by_signal[signal] = book
        by_id[book["id"]] = book
    return Playbooks(by_id, by_signal)


def all_signals(config: AlertingConfig, taxonomy: Optional[Taxonomy] = None) -> list[str]:
    """Every signal the detector can raise (each needs a playbook)."""
    taxonomy = taxonomy or load_taxonomy()
    return ([f"aspect:{a}" for a in taxonomy.aspect_names] + [f"intent:{i}" for i in config.problem_intents]
            + [f"flag:{f}" for f in taxonomy.flags] + ["emerging"])
