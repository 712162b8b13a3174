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


def _seeded_rank(values, seed: int) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}\x1f{v}".encode(), digest_size=8).digest(), "little")
                     for v in values], dtype=np.uint64)


def assign_splits(frame: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int,
                  group_column: str = "split_group") -> pd.Series:
    """One of train/validation/test per row; every row of a group gets the same split.

    Groups and strata are integer codes from here on (one factorize each): the per-group work
    is numpy, and only the seeded hash runs once per group in Python.
    """
    if not (0 <= validation_fraction < 1 and 0 <= test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be in [0, 1) and sum below 1: validation={validation_fraction}, "
                         f"test={test_fraction}")
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    groups = frame[group_column].fillna(frame["feedback_id"]).astype(str)
    group_of_row, group_names = pd.factorize(groups)
    stratum_of_row, stratum_names = pd.factorize(stratum_of(frame))
    n_groups, n_strata = len(group_names), len(stratum_names)
    # A group's stratum is the stratum of most of its rows (ties: alphabetical), so it is unique.
    alphabetical = np.argsort(np.argsort(np.asarray(stratum_names, dtype=object)))
    pairs, pair_rows = np.unique(group_of_row.astype(np.int64) * n_strata + stratum_of_row, return_counts=True)
    pair_group, pair_stratum = pairs // n_strata, pairs % n_strata
    best = np.lexsort((alphabetical[pair_stratum], -pair_rows, pair_group))
    first = best[np.r_[True, pair_group[best][1:] != pair_group[best][:-1]]]
    group_stratum = np.empty(n_groups, dtype=np.int64)
    group_stratum[pair_group[first]] = pair_stratum[first]
    size = np.bincount(group_of_row, minlength=n_groups)
    rank = _seeded_rank(np.asarray(group_names, dtype=object).tolist(), seed)
    split_of_group = np.empty(n_groups, dtype=object)
    for stratum in range(n_strata):
        members = np.flatnonzero(group_stratum == stratum)
        members = members[np.argsort(rank[members], kind="stable")]
        member_size = size[members]
        # Midpoint of each group's share of the cumulative size decides its split.
        position = (np.cumsum(member_size) - member_size / 2) / member_size.sum()
        split_of_group[members] = np.where(position < test_fraction, TEST,
                                           np.where(position < test_fraction + validation_fraction, VALIDATION, TRAIN))
    return pd.Series(split_of_group[group_of_row], index=frame.index, dtype=groups.dtype)
