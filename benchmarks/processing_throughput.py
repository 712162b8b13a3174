"""Throughput of the processing job: bronze -> silver -> features, rows/s per stage, peak memory.

    .venv/bin/python benchmarks/processing_throughput.py [--generated-rows 1000000] [--workers 2]

Data sets: the 23k Women's E-Commerce Clothing Reviews (../shared/data/external; skipped with
a message when absent) and N rows from the demo generator (processing.demo_data). Each run
happens in a fresh child process whose peak RSS (itself + its workers) is sampled with psutil.

Baseline, measured in the same run on the same rows: the obvious whole-file pandas job —
`pd.read_csv` / `pd.read_json` into one frame (first `--baseline-rows` rows), `validate_record`, the same cleaning and PII
masking via `.apply`, langdetect on every row, exact `drop_duplicates`, datasketch
`MinHashLSH` insert/query per row, then `compute_features`. On a shared machine absolute
numbers move with the load; the ratio to the baseline is the figure to quote.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLOTHING = REPO.parent / "shared" / "data" / "external" / "womens_ecommerce_clothing_reviews"
CLOTHING_MAPPING = {
    "fields": {"text": "Review Text", "title": "Title", "star_rating": "Rating", "product_category": "Class Name",
               "sku": "Clothing ID"},
    "constants": {"channel": "review", "source": "womens_clothing", "created_at": "2026-01-01T00:00:00Z"},
    "derive_feedback_id": True,
}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "MLFLOW_DISABLE_TELEMETRY": "true", "SAGEMAKER_VALIDATE_ROLE": "false",
               "AWS_DEFAULT_REGION": "us-east-1", "TOKENIZERS_PARALLELISM": "false"}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (worker processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class PeakRss:
    """Samples RSS of this process and its children every `interval` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.1):
        import psutil

        self.process = psutil.Process()
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                total = self.process.memory_info().rss
                for child in self.process.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------ child: our pipeline
def child_pipeline(input_path: str, mapping: str, workers: int, chunk_rows: int) -> dict:
    from processing.config import ProcessingConfig
    from processing.feature_engineering import run
    from processing.readers import ColumnMapping
    from processing.sharding import ShardSpec

    work = Path(tempfile.mkdtemp(prefix="fbrain-bench-"))
    os.environ["FBRAIN_LOCAL_FEATURE_STORE"] = str(work / "feature_store")
    config = ProcessingConfig(workers=workers, chunk_rows=chunk_rows)
    with PeakRss() as rss:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        report = run(Path(input_path), work / "out", config, ShardSpec(0, 1, "none"),
                     ColumnMapping.from_json(mapping) if mapping else None)
        wall = time.perf_counter() - started
    return {"rows": report.bronze, "wall_s": wall, "cpu_s": cpu_seconds() - cpu_started, "peak_rss_mb": rss.peak / 2**20, "stages": report.stages,
            "counts": report.counts()}


# ------------------------------------------------------------------ child: the naive baseline
def child_baseline(input_path: str, mapping: str, limit: int) -> dict:
    import pandas as pd
    from datasketch import MinHash, MinHashLSH
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    from processing.cleaning import clean_text
    from processing.config import ProcessingConfig
    from processing.dedup import normalised_for_dedup, shingles
    from processing.features import compute_features
    from processing.pii import PiiMasker
    from processing.schema import RecordValidationError, validate_record

    config = ProcessingConfig()
    DetectorFactory.seed = config.language_seed
    stages: dict[str, float] = {}
    with PeakRss() as rss:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        clock = time.perf_counter()
        path = Path(input_path)
        if path.is_dir():
            path = next(p for p in sorted(path.iterdir()) if p.suffix in (".csv", ".jsonl"))
        # Whole-file style, but only the rows it will process, so rows/s compare per-row cost.
        frame = (pd.read_csv(path, dtype=str, keep_default_na=False, nrows=limit) if path.suffix == ".csv"
                 else pd.read_json(path, lines=True, dtype=False, nrows=limit))
        if mapping:
            spec = json.loads(mapping)
            frame = pd.DataFrame({ours: frame[theirs] for ours, theirs in spec["fields"].items()})
            for key, value in spec["constants"].items():
                frame[key] = value
            frame["feedback_id"] = [f"row-{i}" for i in range(len(frame))]
        frame = frame.replace({"": None})
        stages["read"] = time.perf_counter() - clock

        clock = time.perf_counter()

        def validate(row: dict):
            try:
                return validate_record({k: v for k, v in row.items() if v is not None and v == v},
                                       config.max_text_chars).model_dump()
            except RecordValidationError:
                return None

        records = [r for r in (validate(row) for row in frame.to_dict(orient="records")) if r is not None]
        silver = pd.DataFrame(records)
        stages["validate"] = time.perf_counter() - clock

        clock = time.perf_counter()
        masker = PiiMasker(config)
        silver["text"] = silver["text"].apply(clean_text).apply(masker.mask)

        def language(text: str):
            try:
                return detect(text)
            except LangDetectException:
                return None

        silver["language"] = silver["language"].where(silver["language"].notna(), silver["text"].apply(language))
        stages["clean_mask_language"] = time.perf_counter() - clock

        clock = time.perf_counter()
        silver["norm"] = silver["text"].apply(normalised_for_dedup)
        silver = silver.drop_duplicates(["norm", "customer_id"])
        lsh = MinHashLSH(threshold=config.near_duplicate_threshold, num_perm=config.minhash_num_perm)
        keep = []
        for feedback_id, norm in zip(silver["feedback_id"], silver["norm"]):
            minhash = MinHash(num_perm=config.minhash_num_perm, seed=config.minhash_seed)
            minhash.update_batch(shingles(norm, config.shingle_words))
            if lsh.query(minhash):
                keep.append(False)
                continue
            lsh.insert(feedback_id, minhash)
            keep.append(True)
        silver = silver[keep]
        stages["dedup"] = time.perf_counter() - clock

        clock = time.perf_counter()
        compute_features(silver)
        stages["features"] = time.perf_counter() - clock
        wall = time.perf_counter() - started
    return {"rows": len(frame), "wall_s": wall, "cpu_s": cpu_seconds() - cpu_started, "peak_rss_mb": rss.peak / 2**20,
            "stages": {k: {"seconds": v} for k, v in stages.items()}}


# ------------------------------------------------------------------ parent
def in_child(kind: str, **kwargs) -> dict:
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(REPO)}
    command = [sys.executable, __file__, "--child", kind, "--child-args", json.dumps(kwargs)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def generated_file(rows: int, seed: int, folder: Path) -> Path:
    """JSONL of `rows` generated records, cached (generation is not part of the measurement)."""
    from processing.demo_data import generate_records

    path = folder / f"generated-{rows}-{seed}.jsonl"
    if path.exists():
        return path
    print(f"generating {rows} rows with processing.demo_data.generate_records (cached at {path}) ...", flush=True)
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for record in generate_records(rows, seed):
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    partial.rename(path)
    print(f"  generated in {time.perf_counter() - started:.0f}s", flush=True)
    return path


def print_table(name: str, ours: dict, baseline: dict | None, cores: int) -> None:
    rate = ours["rows"] / ours["wall_s"]
    cpu_rate = ours["rows"] / ours["cpu_s"]
    print(f"\n== {name}: {ours['rows']} rows ==")
    print(f"{'stage':<24}{'seconds':>10}{'rows/s':>12}")
    for stage, values in ours["stages"].items():
        rows_per_s = values.get("rows_per_second") or 0
        print(f"{stage:<24}{values['seconds']:>10.2f}{rows_per_s:>12.0f}")
    print(f"{'end to end (ours)':<24}{ours['wall_s']:>10.2f}{rate:>12.0f}   peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"{'  per CPU-second':<24}{ours['cpu_s']:>10.2f}{cpu_rate:>12.0f}   (x{cores} cores if idle: "
          f"~{cpu_rate * cores:.0f} rows/s)")
    print(f"outcomes: {ours['counts']}")
    if baseline:
        base_rate = baseline["rows"] / baseline["wall_s"]
        base_cpu_rate = baseline["rows"] / baseline["cpu_s"]
        detail = ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in baseline["stages"].items())
        print(f"{'baseline (naive pandas)':<24}{baseline['wall_s']:>10.2f}{base_rate:>12.0f}   peak RSS "
              f"{baseline['peak_rss_mb']:.0f} MB on {baseline['rows']} rows ({detail})")
        print(f"{'  baseline per CPU-s':<24}{baseline['cpu_s']:>10.2f}{base_cpu_rate:>12.0f}")
        print(f"speed-up vs baseline: {rate / base_rate:.1f}x wall, {cpu_rate / base_cpu_rate:.1f}x per CPU-second; "
              f"target 5,000 rows/s wall: {'met' if rate >= 5000 else 'NOT met'} ({rate:.0f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generated-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--baseline-rows", type=int, default=3_000,
                        help="rows the (slow) baseline processes; rows/s are compared")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "fbrain-bench-data")
    parser.add_argument("--child")
    parser.add_argument("--child-args")
    args = parser.parse_args()
    if args.child:
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
        result = (child_pipeline if args.child == "pipeline" else child_baseline)(**json.loads(args.child_args))
        print(json.dumps(result))
        return 0

    print(f"processing throughput: workers={args.workers}, chunk_rows={args.chunk_rows}, cores={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    mapping = json.dumps(CLOTHING_MAPPING)
    if CLOTHING.is_dir():
        baseline = in_child("baseline", input_path=str(CLOTHING), mapping=mapping, limit=args.baseline_rows)
        ours = in_child("pipeline", input_path=str(CLOTHING), mapping=mapping, workers=args.workers,
                        chunk_rows=args.chunk_rows)
        print_table("womens_ecommerce_clothing_reviews", ours, baseline, min(args.workers, os.cpu_count() or 1))
    else:
        print(f"skipped the clothing reviews: {CLOTHING} is absent on this machine")
    if args.generated_rows > 0:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        path = generated_file(args.generated_rows, args.seed, args.cache_dir)
        baseline = in_child("baseline", input_path=str(path), mapping="", limit=args.baseline_rows)
        ours = in_child("pipeline", input_path=str(path), mapping="", workers=args.workers,
                        chunk_rows=args.chunk_rows)
        print_table(f"generated ({args.generated_rows} rows, seed {args.seed})", ours, baseline,
                    min(args.workers, os.cpu_count() or 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
