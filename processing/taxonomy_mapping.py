"""Re-mapping labels between taxonomy versions, so historical data stays usable.

A mapping file `processing/taxonomy/mapping_v<from>_to_v<to>.json` maps every label of the
older version onto the newer one (a table per task), plus text rules for labels the new
version split (e.g. v0 `return_refund` -> v1 `refund_request` when the text asks for money
back, `return_exchange` otherwise). `remap_labels` follows a chain of such files
(v0 -> v1 -> v2 ...). A mapping file is checked against both taxonomies when loaded: a label
left unmapped, or mapped onto a label the target does not have, is an error, not a silent null.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from processing.taxonomy import TAXONOMY_DIR, load_taxonomy

LABEL_FIELDS = ("sentiment", "intent", "aspects", "flags", "remediation_status")


class TaxonomyMappingError(ValueError):
    pass


@dataclass(frozen=True)
class TaxonomyMapping:
    from_version: str
    to_version: str
    tables: dict[str, dict[str, Any]]
    rules: tuple[dict[str, Any], ...]


def mapping_path(from_version: str, to_version: str) -> Path:
    return TAXONOMY_DIR / f"mapping_v{from_version}_to_v{to_version}.json"


def _check(mapping: TaxonomyMapping) -> None:
    source, target = load_taxonomy(mapping.from_version), load_taxonomy(mapping.to_version)
    expected = {
        "sentiment": (source.sentiments, target.sentiments),
        "intent": (source.intents, target.intents),
        "aspects": (source.aspect_names, target.aspect_names),
        "flags": (source.flags, target.flags),
        "remediation_status": (source.remediation_statuses, target.remediation_statuses),
    }
    for task, (old_labels, new_labels) in expected.items():
        table = mapping.tables.get(task, {})
        unmapped = [label for label in old_labels if label not in table]
        if unmapped:
            raise TaxonomyMappingError(f"v{mapping.from_version}->v{mapping.to_version}: {task} labels {unmapped} have no mapping")
        for old, new in table.items():
            targets = new if isinstance(new, list) else [new]
            bad = [t for t in targets if t is not None and t not in new_labels]
            if bad:
                raise TaxonomyMappingError(f"v{mapping.from_version}->v{mapping.to_version}: {task} {old!r} maps to {bad}, "
                                           f"not in taxonomy v{mapping.to_version}")
    for rule in mapping.rules:
        for label in [rule.get("to")] + list(rule.get("add", [])):
            allowed = target.aspect_names if rule["task"] == "aspects" else target.intents
            if label is not None and label not in allowed:
                raise TaxonomyMappingError(f"rule {rule} names {label!r}, not in taxonomy v{mapping.to_version}")


@lru_cache(maxsize=None)
def load_mapping(from_version: str, to_version: str) -> TaxonomyMapping:
    path = mapping_path(from_version, to_version)
    if not path.exists():
        known = sorted(p.name for p in TAXONOMY_DIR.glob("mapping_v*_to_v*.json"))
        raise TaxonomyMappingError(f"no mapping from v{from_version} to v{to_version}; known mappings: {known}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    mapping = TaxonomyMapping(str(raw["from_version"]), str(raw["to_version"]),
                              {task: raw.get(task, {}) for task in LABEL_FIELDS}, tuple(raw.get("rules", [])))
    _check(mapping)
    return mapping


def _chain(from_version: str, to_version: str) -> list[TaxonomyMapping]:
    """Mappings from one version to another, one version step at a time (upgrades only)."""
    if not (from_version.isdigit() and to_version.isdigit()):
        raise TaxonomyMappingError(f"versions must be numbers, got {from_version!r} -> {to_version!r}")
    start, end = int(from_version), int(to_version)
    if end < start:
        raise TaxonomyMappingError(f"cannot map v{from_version} back to v{to_version}: mappings only go forward")
    return [load_mapping(str(v), str(v + 1)) for v in range(start, end)]


def _rule_applies(rule: dict[str, Any], text: str) -> bool:
    if "if_text_matches" in rule and not re.search(rule["if_text_matches"], text):
        return False
    if "if_text_not_matches" in rule and re.search(rule["if_text_not_matches"], text):
        return False
    return True


def _apply(mapping: TaxonomyMapping, record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    text = str(record.get("text") or "")
    tables = mapping.tables
    for task in ("sentiment", "remediation_status"):
        if record.get(task) is not None:
            out[task] = tables[task][record[task]]
    flags = [tables["flags"][f] for f in record.get("flags") or []]

    intent = record.get("intent")
    if intent is not None:
        out["intent"] = tables["intent"][intent]
        for rule in mapping.rules:
            if rule["task"] == "intent" and rule["from"] == intent and _rule_applies(rule, text):
                out["intent"] = rule["to"]
                flags.extend(rule.get("add_flags", []))
                break

    aspects = record.get("aspects")
    if aspects is not None:
        mapped: list[str] = []
        for aspect in aspects:
            mapped.extend(tables["aspects"][aspect])
            for rule in mapping.rules:
                if rule["task"] == "aspects" and rule["from"] == aspect and _rule_applies(rule, text):
                    mapped.extend(rule.get("add", []))
        out["aspects"] = list(dict.fromkeys(mapped))
    if "flags" in record or flags:
        out["flags"] = list(dict.fromkeys(flags))
    # A task whose label mapped to nothing is no longer labeled in the new version.
    out["labeled_tasks"] = [t for t in record.get("labeled_tasks") or [] if out.get(t) is not None]
    out["taxonomy_version"] = mapping.to_version
    return out


def remap_labels(record: dict[str, Any], from_version: str, to_version: str) -> dict[str, Any]:
    """A copy of record with its labels expressed in taxonomy `to_version`.

    Raises TaxonomyMappingError for a label that is not in `from_version` (the record was
    labeled against another version than claimed) or when no mapping chain exists.
    """
    from_version, to_version = str(from_version), str(to_version)
    declared = str(record.get("taxonomy_version", from_version))
    if declared != from_version:
        raise TaxonomyMappingError(f"record {record.get('feedback_id')!r} is labeled in v{declared}, not v{from_version}")
    source = load_taxonomy(from_version)
    known = {"sentiment": source.sentiments, "intent": source.intents, "remediation_status": source.remediation_statuses}
    for task, allowed in known.items():
        if record.get(task) is not None and record[task] not in allowed:
            raise TaxonomyMappingError(f"{task}={record[task]!r} is not a v{from_version} label: {list(allowed)}")
    for task, allowed in (("aspects", source.aspect_names), ("flags", source.flags)):
        unknown = [label for label in record.get(task) or [] if label not in allowed]
        if unknown:
            raise TaxonomyMappingError(f"{task} {unknown} are not v{from_version} labels: {list(allowed)}")
    out = dict(record, taxonomy_version=from_version)
    for mapping in _chain(from_version, to_version):
        out = _apply(mapping, out)
    return out


def _step_targets(mapping: TaxonomyMapping, task: str, label: str) -> list[Optional[str]]:
    """Every label `label` can become in one mapping step, whatever the text: the table's target(s) plus the
    targets of the text rules from it (aspect rules only add aspects, so they cannot leave one unmapped)."""
    target = mapping.tables.get(task, {}).get(label)
    targets = list(target) if isinstance(target, list) else [target]
    if task != "aspects":
        targets += [rule.get("to") for rule in mapping.rules if rule["task"] == task and rule["from"] == label]
    return targets


def unmapped_labels(labels: dict[str, Any], from_version: str, to_version: str) -> list[str]:
    """The labels (`task=label`) of `labels` (task -> label, `aspects` -> list) that `to_version` may have no
    counterpart for: some step of the chain maps them to nothing (null, or an empty aspect list), for some text.

    Checked without the text, so a label is accepted only when every text maps it onto a label; then
    `remap_labels` with the item's text cannot drop it. Used for a reviewer's correction of an older version:
    a label it cannot carry forward is reported, not turned into a silent null. Raises TaxonomyMappingError
    when no chain of mapping files leads from `from_version` to `to_version`."""
    chain = _chain(str(from_version), str(to_version))
    missing = []
    for task, value in labels.items():
        for original in (value if isinstance(value, list) else [value]):
            current: set[Optional[str]] = {original}
            for mapping in chain:
                current = {target for label in current for target in _step_targets(mapping, task, label)}
                if not current or None in current:
                    missing.append(f"{task}={original!r}")
                    break
    return missing


def mapping_table(from_version: str, to_version: str) -> list[dict[str, Optional[str]]]:
    """Flat rows (task, from, to) of one mapping file, for docs and reviews."""
    mapping = load_mapping(str(from_version), str(to_version))
    rows = []
    for task in LABEL_FIELDS:
        for old, new in mapping.tables[task].items():
            rows.append({"task": task, "from": old, "to": ", ".join(new) if isinstance(new, list) else new})
    return rows
