"""Configuration of the processing layer (one section of pipelines.config.FeedbackBrainConfig)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from processing.settings import settings_section


@settings_section
class ProcessingConfig:
    max_text_chars: int = 20_000
    """Records with longer text are quarantined (reason text_too_long)."""
    validation_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    test_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.15
    split_seed: int = 13
    taxonomy_version: str = "1"
    feature_group_name: str = "feedback-features"

    # --- lake job: reading (processing.readers) ---
    chunk_rows: int = 10_000
    """Rows read, validated and written per chunk; bounds the job's memory."""
    workers: int = 1
    """Processes transforming chunks in pass 1 (1 = in-process; set to the core count for big inputs)."""
    progress_every_rows: int = 50_000
    """A progress log line (rows, rows/s) is written at least this often."""

    # --- silver: cleaning and PII (processing.cleaning, processing.pii) ---
    pseudonym_salt_secret_id: str = ""
    """AWS Secrets Manager secret holding the salt of customer / order id pseudonyms (the pipeline passes its
    PseudonymSaltSecretId parameter here). Empty, or in a local run: a random salt kept in
    `<workspace>/secrets/`, created on first use (processing.secrets). No salt is ever written in config."""
    pseudonym_hex_chars: int = 16
    """Hex characters of the salted BLAKE2b digest kept in a pseudonym."""
    min_account_digits: int = 9
    """A bare digit run this long (not a phone, not a Luhn card) is masked as [ACCOUNT_ID]."""
    min_phone_digits: int = 7
    """Fewest digits in a phone-number-shaped match for it to be masked as [PHONE]."""
    max_phone_digits: int = 15
    """Most digits in a phone number (E.164)."""
    name_signoff_tail_chars: int = 40
    """A dash sign-off ("- Anna") is only looked for in this many last characters."""
    max_bare_phone_digits: int = 12
    """An unseparated digit run longer than this is an id, not a phone."""

    # --- silver: language (processing.language) ---
    language_seed: int = 0
    """Seed of langdetect's sampler, so detection is reproducible."""
    language_min_letters: int = 12
    """Texts with fewer letters get no language (too short to tell)."""
    langdetect_trials: int = 3
    """Random-sampling trials per langdetect call (library default 7; fewer is faster)."""
    langdetect_max_chars: int = 300
    """Characters of a text langdetect looks at."""
    language_cache_size: int = 50_000
    """Texts whose detected language is remembered (templated feedback repeats itself)."""
    english_fast_path_min_tokens: int = 4
    """Fewest tokens for the English stop-word fast path to decide without langdetect."""
    english_fast_path_stopword_ratio: float = 0.2
    """ASCII texts whose share of English stop words reaches this are 'en' without langdetect."""
    stopword_vote_min_ratio: float = 0.25
    """Stop-word vote: the winner's stop words must be at least this share of the tokens."""
    stopword_vote_min_hits: int = 3
    """Stop-word vote: the winner needs at least this many stop-word tokens."""
    stopword_vote_margin: float = 2.0
    """Stop-word vote: the winner needs this many times the runner-up's hits (else langdetect decides)."""

    # --- silver: spam / gibberish rules (processing.spam) ---
    spam_max_urls: int = 2
    """A text with at least this many URLs is spam (rule `too_many_links`)."""
    spam_max_repeated_chars: int = 8
    """A run of one character this long is spam (rule `repeated_characters`)."""
    spam_max_non_word_ratio: float = 0.5
    """Share of tokens with no letter or digit above which a text is gibberish (rule `non_word_ratio`)."""
    spam_min_vowel_ratio: float = 0.15
    """Latin-letter texts with a vowel share below this are gibberish (rule `low_vowel_ratio`)."""
    spam_min_letters_for_ratio_rules: int = 20
    """Ratio rules only judge texts with at least this many letters."""

    # --- silver: deduplication (processing.dedup) ---
    near_duplicate_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    """Estimated Jaccard similarity of word shingles at which two texts are near-duplicates."""
    minhash_num_perm: int = 64
    """MinHash permutations per signature (more = more exact, slower)."""
    minhash_seed: int = 1
    """Seed of the MinHash permutations (datasketch-compatible)."""
    shingle_words: int = 2
    """Words per shingle."""
    near_duplicate_min_tokens: int = 8
    """Shorter texts are only deduplicated exactly ("Love it!" by two customers is not a copy)."""
    near_duplicate_scope: Literal["customer", "global"] = "customer"
    """"customer": near-duplicates only count between records of the same customer (records
    without a customer id share one anonymous customer); "global": across all customers.
    Templated requests ("where is my order, it has been 5 days") from different customers are
    separate feedback, while re-posts and edited resubmissions come from the same customer
    (docs/processing.md). Splits still group near-copies across customers either way."""
    minhash_batch_docs: int = 64
    """Documents permuted per vectorised MinHash batch (keeps the shingles x num_perm array in cache)."""
    minhash_hash_block_docs: int = 2048
    """Documents whose shingles are hashed in one numpy pass (bounds the per-shingle temporary arrays)."""
    minhash_vector_crc_max_bytes: int = 256
    """Shingles up to this many bytes get their CRC-32 from numpy tables (max_bytes x 256 x 4 bytes); longer ones from zlib."""

    # --- gold and sharding ---
    gold_time_grain: str = "D"
    """Pandas period of gold aggregates ('D' = day)."""
    gold_flush_rows: int = 100_000
    """Silver rows whose gold indicators are grouped in one go (bounds memory; fewer, larger groupbys)."""
    dedup_partitions: int = 16
    """Hash partitions of the exact-duplicate index (the unit a distributed reducer owns)."""

    # --- data, features and Feature Store (processing.adapters, .features, .feature_store) ---
    external_data_dir: str = ""
    """Folder of the third-party data sets; empty means ../shared/data/external beside the checkout."""
    adapter_chunk_rows: int = 5_000
    """Rows an adapter reads from a source file at a time."""
    feature_store_batch_size: int = 100
    """Records per PutRecord batch (a progress line is logged per batch)."""
    feature_store_max_workers: int = 4
    """Threads sending one batch's PutRecord calls concurrently (1 = strictly in row order)."""
    feature_store_max_attempts: int = 5
    """PutRecord attempts per record on throttling / 5xx before it is reported as failed."""
    feature_store_backoff_base_s: float = 0.2
    """First retry delay; doubles each attempt (exponential backoff, with jitter)."""
    feature_store_backoff_max_s: float = 10.0
    """Ceiling of one retry delay."""
    feature_store_account_id: str = "000000000000"
    """Account id used in the local offline-store path (SageMaker puts the real one there)."""
    feature_store_offline_s3_uri: str = "s3://feedback-brain-artifacts/feature-store"
    """Offline store location in CreateFeatureGroup."""
    feature_store_role_arn: str = "arn:aws:iam::111122223333:role/feedback-brain-sagemaker"
    """Role the Feature Store assumes to write the offline store."""
    feature_store_kms_key_id: str = ""
    """KMS key for the online and offline stores; empty means the AWS-managed key."""
    feature_store_max_failed_records: int = 0
    """PutRecord failures (after retries) the feature-engineering job tolerates; more fail the job, so a
    run whose features did not reach the Feature Store never looks successful."""
    feature_group_wait_timeout_s: float = 900.0
    """`fbrain features create-group` / `pipeline upsert` wait at most this long for the group to be Created."""
    feature_group_poll_s: float = 5.0
    """Seconds between DescribeFeatureGroup calls while the group is Creating."""
