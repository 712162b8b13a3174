"""Exact and near-duplicate detection that stays correct across shards.

Two phases, so each input shard can do the expensive part alone:

1. Per record (pure, row-level; any shard, any Spark partition): `exact_key` (hash of the
   normalised text + customer), `text_key` (hash of the normalised text alone) and MinHash
   LSH band keys (`NearDuplicateHasher`). Only these compact keys (about 100 bytes a record)
   leave the shard, not the text.
2. Global resolution (`resolve_duplicates`) over the union of all shards' key tables.
   Exact duplicates are grouped by `exact_key`, which is hash-partitioned
   (`exact_key mod dedup_partitions`): each partition owns all copies of its keys, so a
   partition can be resolved alone (one reducer each at scale). Near-duplicates are connected
   components of "shares an LSH band key" (the same rule datasketch's MinHashLSH applies),
   by default only within one customer (`near_duplicate_scope`: short requests worded alike
   by different customers are different feedback, not copies);
   a band key is likewise a partition key for a distributed union-find. Within a group the
   record with the earliest `created_at` (then the smallest feedback_id) is kept, so the
   result does not depend on how files were sharded or ordered.

MinHash signatures are bit-identical to `datasketch.MinHash(num_perm, seed, hashfunc=zlib.crc32)`
with `update_batch(shingles)` (tested), so dedup outcomes and split groups do not change between
versions (a champion's test rows must stay out of its challenger's training split). Shingles are
located with numpy as byte ranges of a block's joined UTF-8 text and hashed straight from that
buffer (no per-shingle string); the permutations then run in small batches of documents, which
keep the temporary (shingles x num_perm) array in cache.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from datasketch.minhash import _fmix

from processing.config import ProcessingConfig

KEPT = "kept"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
_NORMALISE_RE = re.compile(r"[^\w\[\]]+")
_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)


# ASCII bytes that _NORMALISE_RE treats as separators (all but letters, digits, "_", "[" and "]").
_ASCII_SEPARATORS_TO_SPACE = bytes(b if (chr(b).isalnum() or chr(b) in "_[]") else 32 for b in range(256))


def normalised_for_dedup(text: str) -> str:
    """Case, punctuation and spacing do not make a text different: single-spaced lower-case words."""
    if text.isascii():  # most feedback: byte-level translate + split is ~5x cheaper than the regex
        return " ".join(text.encode("ascii").lower().translate(_ASCII_SEPARATORS_TO_SPACE).decode("ascii").split())
    return _NORMALISE_RE.sub(" ", text.lower()).strip()


def _hash64(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def exact_key(normalised_text: str, customer_id: Optional[str]) -> int:
    """Same customer, same words: an exact duplicate (a re-submitted form, a double import)."""
    return _hash64(f"{customer_id or ''}\x1f{normalised_text}")


def customer_key(customer_id: Optional[str]) -> int:
    """Who wrote it, as a compact key (records without a customer share one anonymous key, as in exact_key)."""
    return _hash64(customer_id or "")


def text_key(normalised_text: str) -> int:
    """Same words whoever wrote them (used to keep identical texts in one split)."""
    return _hash64(normalised_text)


def shingles(normalised_text: str, words: int) -> list[bytes]:
    tokens = normalised_text.split()
    if len(tokens) <= words:
        return [" ".join(tokens).encode("utf-8")]
    return [" ".join(tokens[i:i + words]).encode("utf-8") for i in range(len(tokens) - words + 1)]


# CRC-32 is 8x cheaper than datasketch's default SHA-1 per shingle; datasketch applies the
# MurmurHash3 finalizer to every input hash, which makes a weak hash safe for MinHash.
SHINGLE_HASH = zlib.crc32


class RangeCrc32:
    """zlib.crc32 of many byte ranges of one buffer at once, with numpy (equal to zlib's, tested).

    CRC-32 is affine in the message: crc32(m) = crc32(len(m) zero bytes) XOR the XOR over bytes
    of T_k[byte], where k is how many bytes follow it and T_k[b] the zero-initialised CRC of b then
    k zeros. So every range is hashed by one vectorised pass per byte position from its end,
    and no Python runs per range. Ranges longer than `max_length` (rare: one giant token) are
    hashed by zlib directly, which bounds the tables (max_length x 256 uint32).
    """

    def __init__(self, max_length: int):
        self.max_length = max_length
        polynomial_table = np.array([self._crc_step(byte) for byte in range(256)], dtype=np.uint32)
        tables = np.empty((max_length, 256), dtype=np.uint32)
        tables[0] = polynomial_table
        for k in range(1, max_length):  # one more zero byte after b: one more CRC step
            previous = tables[k - 1]
            tables[k] = polynomial_table[previous & 0xFF] ^ (previous >> np.uint32(8))
        self.tables = tables
        self.zeros = np.array([zlib.crc32(bytes(length)) for length in range(max_length + 1)], dtype=np.uint32)

    @staticmethod
    def _crc_step(byte: int) -> int:
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ (0xEDB88320 if value & 1 else 0)
        return value

    def __call__(self, buffer: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        data = np.frombuffer(buffer, dtype=np.uint8)
        lengths = ends - starts
        out = np.empty(len(starts), dtype=np.uint32)
        long = np.flatnonzero(lengths > self.max_length)
        for index in long.tolist():
            out[index] = zlib.crc32(buffer[starts[index]:ends[index]])
        short = np.flatnonzero(lengths <= self.max_length)
        order = short[np.argsort(-lengths[short], kind="stable")]  # longest first: position k is a prefix
        sorted_ends, sorted_lengths = ends[order], lengths[order]
        value = self.zeros[sorted_lengths]
        longer_than = np.searchsorted(-sorted_lengths, -np.arange(int(sorted_lengths.max(initial=0))), side="left")
        for k, count in enumerate(longer_than.tolist()):
            value[:count] ^= self.tables[k][data[sorted_ends[:count] - 1 - k]]
        out[order] = value
        return out


@dataclass(frozen=True)
class LshParams:
    bands: int
    rows: int


class NearDuplicateHasher:
    """MinHash signatures and LSH band keys for a batch of normalised texts."""

    def __init__(self, config: Optional[ProcessingConfig] = None):
        self.config = config or ProcessingConfig()
        cfg = self.config
        template = MinHash(num_perm=cfg.minhash_num_perm, seed=cfg.minhash_seed, hashfunc=SHINGLE_HASH)
        if template.hashvalues.dtype != np.uint32:
            raise RuntimeError("datasketch's default MinHash scheme changed; pin scheme='affine32' here")
        self._a, self._b = (row.astype(np.uint32) for row in template.permutations)
        bands, rows = _optimal_param(cfg.near_duplicate_threshold, cfg.minhash_num_perm, 0.5, 0.5)
        self.lsh = LshParams(bands, rows)
        self._range_crc = RangeCrc32(cfg.minhash_vector_crc_max_bytes)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32; row i equals datasketch's MinHash of texts[i]'s shingles.

        texts must be `normalised_for_dedup` output (single-spaced words, no newline).
        """
        out = np.empty((len(texts), self.config.minhash_num_perm), dtype=np.uint32)
        block, step = self.config.minhash_hash_block_docs, self.config.minhash_batch_docs
        for block_start in range(0, len(texts), block):
            block_texts = texts[block_start:block_start + block]
            hashes, offsets = self._shingle_hashes(block_texts)
            mixed = _fmix(hashes, 32).reshape(-1, 1)
            bounds = np.append(offsets, len(hashes))
            for start in range(0, len(block_texts), step):
                stop = min(start + step, len(block_texts))
                with np.errstate(over="ignore"):
                    permuted = mixed[bounds[start]:bounds[stop]] * self._a  # wraps mod 2**32, as datasketch's affine32
                    permuted += self._b
                out[block_start + start:block_start + stop] = np.minimum.reduceat(
                    permuted, offsets[start:stop] - bounds[start], axis=0)
        return out

    def _shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """uint32 SHINGLE_HASH of every shingle of every text, grouped by text; and each text's first index.

        A text of more than `shingle_words` words has one shingle per window of that many words
        (the bytes from the window's first word start to its last word end: `shingles`' " ".join of
        single-spaced words); a shorter text, even an empty one, is one shingle: the whole text.
        """
        words = self.config.shingle_words
        joined = "\n".join(texts).encode("utf-8")
        data = np.frombuffer(joined, dtype=np.uint8)
        size = len(data)
        doc_breaks = np.flatnonzero(data == 10)
        if len(doc_breaks) != len(texts) - 1:
            raise ValueError("signatures() needs normalised_for_dedup texts; one contains a newline")
        doc_starts = np.concatenate(([0], doc_breaks + 1))
        doc_ends = np.concatenate((doc_breaks, [size]))
        # Word starts/ends: edges of runs of bytes that are neither a space nor a text break.
        inside = np.concatenate(([False], (data != 32) & (data != 10), [False]))
        change = np.flatnonzero(inside[1:] != inside[:-1])
        word_starts, word_ends = change[0::2], change[1::2]
        word_doc = np.searchsorted(doc_starts, word_starts, side="right") - 1
        word_counts = np.bincount(word_doc, minlength=len(texts))
        first_word = np.cumsum(word_counts) - word_counts
        shingle_counts = np.maximum(word_counts - words + 1, 1)
        offsets = np.cumsum(shingle_counts) - shingle_counts
        starts = np.empty(int(shingle_counts.sum()), dtype=np.int64)
        ends = np.empty_like(starts)
        short = word_counts <= words  # one whole-text shingle each
        starts[offsets[short]], ends[offsets[short]] = doc_starts[short], doc_ends[short]
        # Window w (its first word's global index) belongs to its text if its last word does too.
        window = np.arange(len(word_starts))
        valid = ~short[word_doc] & (window + words <= first_word[word_doc] + word_counts[word_doc])
        window, window_doc = window[valid], word_doc[valid]
        position = offsets[window_doc] + (window - first_word[window_doc])
        starts[position], ends[position] = word_starts[window], word_ends[window + words - 1]
        return self._range_crc(joined, starts, ends), offsets

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) int64: one key per band; equal keys = identical band = LSH candidates."""
        n = signatures.shape[0]
        used = signatures[:, : self.lsh.bands * self.lsh.rows].astype(np.uint64).reshape(n, self.lsh.bands, self.lsh.rows)
        keys = np.zeros((n, self.lsh.bands), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for row in range(self.lsh.rows):
                keys = keys * _BAND_MIX + used[:, :, row] + np.uint64(1)
            keys = keys * _BAND_MIX + np.arange(self.lsh.bands, dtype=np.uint64)  # bands never collide
        return keys.view(np.int64)


NEAR_DUPLICATE_SCOPES = ("customer", "global")


def scoped_band_keys(band_arrays: list[np.ndarray], customers: np.ndarray) -> list[np.ndarray]:
    """Band keys that only collide for the same customer: (band key, customer key) mixed into one int64.

    Still a plain equality key, so a band key stays a partition key across shards.
    """
    customers = customers.astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        return [((band.astype(np.int64).view(np.uint64) * _BAND_MIX) ^ customers).view(np.int64) for band in band_arrays]


def band_columns(bands: int) -> list[str]:
    return [f"band_{i}" for i in range(bands)]


def _connected_min_rank(rank: np.ndarray, key_columns: Iterable[np.ndarray], active: np.ndarray) -> np.ndarray:
    """Label each active row with the smallest rank reachable through shared keys (min-label propagation)."""
    labels = rank.copy()
    keys = [k for k in key_columns]
    if not active.any() or not keys:
        return labels
    index = np.flatnonzero(active)
    # Hash each key column once; every round is then plain integer array work.
    groups = [pd.factorize(key[index])[0] for key in keys]
    current = labels[index]
    while True:
        before = current.copy()
        for codes in groups:
            group_min = np.full(codes.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(group_min, codes, current)
            np.minimum(current, group_min[codes], out=current)
        if np.array_equal(before, current):
            labels[index] = current
            return labels


def resolve_duplicates(index: pd.DataFrame, config: Optional[ProcessingConfig] = None) -> pd.DataFrame:
    """Decide kept / duplicate / near_duplicate for every row of the global key table.

    index columns: feedback_id, created_at, exact_key, text_key, near_eligible, band_0..band_{b-1},
    and customer_key when `near_duplicate_scope` is "customer" (near-copies only count within
    one customer's feedback). Returns the same rows (same order) with `outcome`, `duplicate_of` (kept feedback_id, or None)
    and `split_group` (rows sharing a text or an LSH band, i.e. that must not span two splits).
    """
    config = config or ProcessingConfig()
    n = len(index)
    result = pd.DataFrame({"feedback_id": index["feedback_id"].to_numpy()}, index=index.index)
    if n == 0:
        return result.assign(outcome=[], duplicate_of=[], split_group=[])
    created = pd.to_datetime(index["created_at"], utc=True).dt.tz_convert(None).to_numpy()
    order = np.lexsort((index["feedback_id"].to_numpy().astype(str), created))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    ids_by_rank = index["feedback_id"].to_numpy()[order]

    # Exact duplicates, one hash partition at a time (each partition is self-contained).
    exact = index["exact_key"].to_numpy(dtype=np.int64)
    winner_rank = np.empty(n, dtype=np.int64)
    partition = np.mod(exact, config.dedup_partitions)
    for part in np.unique(partition):
        rows = np.flatnonzero(partition == part)
        frame = pd.DataFrame({"key": exact[rows], "rank": rank[rows]})
        winner_rank[rows] = frame.groupby("key")["rank"].transform("min").to_numpy()
    is_exact_dup = winner_rank != rank

    bands = [c for c in index.columns if c.startswith("band_")]
    band_arrays = [index[c].to_numpy(dtype=np.int64) for c in bands]
    eligible = index["near_eligible"].to_numpy(dtype=bool) & ~is_exact_dup
    near_keys = band_arrays
    if config.near_duplicate_scope == "customer":
        if "customer_key" not in index.columns:
            raise ValueError("near_duplicate_scope='customer' needs a customer_key column in the dedup index")
        near_keys = scoped_band_keys(band_arrays, index["customer_key"].to_numpy(dtype=np.int64))
    elif config.near_duplicate_scope != "global":
        raise ValueError(f"near_duplicate_scope must be one of {NEAR_DUPLICATE_SCOPES}, "
                         f"got {config.near_duplicate_scope!r}")
    near_root = _connected_min_rank(rank, near_keys, eligible)
    is_near_dup = eligible & (near_root != rank)

    outcome = np.where(is_exact_dup, DUPLICATE, np.where(is_near_dup, NEAR_DUPLICATE, KEPT))
    duplicate_of = np.where(is_exact_dup, ids_by_rank[winner_rank], np.where(is_near_dup, ids_by_rank[near_root], None))
    kept = outcome == KEPT
    group_root = _connected_min_rank(rank, band_arrays + [index["text_key"].to_numpy(dtype=np.int64)], kept)
    result["outcome"] = outcome
    result["duplicate_of"] = duplicate_of
    result["split_group"] = np.where(kept, ids_by_rank[group_root], None)
    return result
