"""Leakage-free, stratified train / validation / test assignment.

Rows are assigned by *group* (`split_group` from processing.dedup: rows sharing a normalised
text or an LSH band), so a text and its near-copies never sit on both sides of a split.
Within each stratum (the sentiment label, else the intent label, else "unlabeled") groups are
ordered by a seeded hash and cut at the cumulative fractions: the sizes match the requested
fractions per stratum and the assignment is stable for a given seed and group set.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
UNLABELED = "unlabeled"


def stratum_of(frame: pd.DataFrame) -> pd.Series:
    """Sentiment label, else intent label, else 'unlabeled'."""
    stratum = pd.Series(UNLABELED, index=frame.index, dtype=object)
    for column in ("intent", "sentiment"):  # later wins: sentiment is the primary stratum
        if column in frame:
            labeled = frame[column].notna()
            stratum[labeled] = column + ":" + frame.loc[labeled, column].astype(str)
    return stratum


def _seeded_rank(values: pd.Series, seed: int) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}\x1f{v}".encode(), digest_size=8).digest(), "little")
                     for v in values], dtype=np.uint64)


def assign_splits(frame: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int,
                  group_column: str = "split_group") -> pd.Series:
    """One of train/validation/test per row; every row of a group gets the same split."""
    if not (0 <= validation_fraction < 1 and 0 <= test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be in [0, 1) and sum below 1: validation={validation_fraction}, "
                         f"test={test_fraction}")
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    groups = frame[group_column].fillna(frame["feedback_id"]).astype(str)
    rows = pd.DataFrame({"group": groups, "stratum": stratum_of(frame)})
    # A group's stratum is the stratum of most of its rows (ties: alphabetical), so it is unique.
    per_group = (rows.groupby(["group", "stratum"]).size().rename("n").reset_index()
                 .sort_values(["group", "n", "stratum"], ascending=[True, False, True])
                 .drop_duplicates("group"))
    sizes = rows.groupby("group").size()
    per_group["size"] = per_group["group"].map(sizes).to_numpy()
    per_group["rank"] = _seeded_rank(per_group["group"], seed)
    assignment: dict[str, str] = {}
    for _, members in per_group.groupby("stratum", sort=True):
        members = members.sort_values("rank")
        total = members["size"].sum()
        # Midpoint of each group's share of the cumulative size decides its split.
        position = (members["size"].cumsum() - members["size"] / 2) / total
        split = np.where(position < test_fraction, TEST,
                         np.where(position < test_fraction + validation_fraction, VALIDATION, TRAIN))
        assignment.update(zip(members["group"], split))
    return groups.map(assignment)
