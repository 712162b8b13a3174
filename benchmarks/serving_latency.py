"""Serving benchmark: the endpoint over HTTP on loopback vs a PyTorch eager baseline, same run.

    .venv/bin/python benchmarks/serving_latency.py [--model-dir DIR] [--load-seconds 60]

Servers run as separate processes (`python3 -m inference.serve` on 127.0.0.1); this
process is the client. Measured for each server:
- single-text latency p50 / p99 over `--requests` sequential requests (keep-alive);
- batched throughput (texts/s): `--batch-size` texts a request, `--batch-concurrency` clients.
The candidate is ONNX Runtime int8 (the serving default: length-sorted sub-batches, micro-
batching); the baseline is the same encoder in PyTorch eager fp32 (transformers, `--runtime
torch`) behind the same HTTP server, padding each batch to its longest text and not waiting
to merge requests, i.e. what a `transformers.pipeline("text-classification", batch_size=N)`
service would run. Then a load test on the
candidate (`--load-clients` concurrent clients for `--load-seconds`, bounded): errors, rate,
latency, and the server's RSS at start and end (memory must stay flat). Finally int8 vs fp32
label agreement and macro-F1 on the labeled texts (`--texts`, default the shipped demo corpus).

Without `--model-dir` it exports the packaged all-MiniLM-L6-v2 with freshly initialised
(untrained) heads: right for latency and memory, meaningless for F1 (said so in the output).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.config import ServingConfig  # noqa: E402
from processing.schema import model_input_text  # noqa: E402
from training.metrics import macro_f1  # noqa: E402

logger = logging.getLogger("serving_latency")

DEFAULT_TEXTS = REPO / "processing" / "data" / "demo_feedback.jsonl"
TARGETS = {"p50_ms": 8.0, "p99_ms": 25.0, "batched_texts_per_s": 450.0, "throughput_ratio": 3.0, "macro_f1_drop_points": 0.5}
MAX_LOAD_SECONDS = 600
WARMUP_REQUESTS = 30
START_TIMEOUT_S = 180
PROGRESS_EVERY_S = 10.0
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
               "SAGEMAKER_VALIDATE_ROLE": "false", "AWS_DEFAULT_REGION": "us-east-1", "TOKENIZERS_PARALLELISM": "false"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="model directory (default: MiniLM + untrained heads, exported now)")
    parser.add_argument("--export-dir", type=Path, help="where the untrained-heads model is exported (reused when present)")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="JSON lines with `text` (+ optional sentiment/intent labels)")
    parser.add_argument("--requests", type=int, default=500, help="single-text requests per server")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batched request")
    parser.add_argument("--batch-requests", type=int, default=40, help="batched requests per server")
    parser.add_argument("--batch-concurrency", type=int, default=2, help="concurrent clients in the throughput test")
    parser.add_argument("--load-clients", type=int, default=16)
    parser.add_argument("--load-seconds", type=float, default=60.0, help=f"load test length (at most {MAX_LOAD_SECONDS})")
    parser.add_argument("--no-baseline", action="store_true", help="skip the PyTorch eager baseline")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="serving.FIELD=VALUE for the candidate server")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- inputs


def model_inputs(rows: list[dict]) -> list[str]:
    """What the model reads of each row: a review's title in front of its text, as the endpoint composes it."""
    return [model_input_text(r["text"], r.get("title") if isinstance(r.get("title"), str) else None) for r in rows]


def load_rows(path: Path) -> list[dict]:
    rows = []
    skipped = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
                rows.append(row)
            else:
                skipped += 1
    logger.info("%d texts from %s (%d malformed or empty lines skipped)", len(rows), path, skipped)
    return rows


def build_untrained_model_dir(root: Path) -> Path:
    directory = root / "minilm-untrained-heads"
    if (directory / "onnx" / "model.int8.onnx").is_file():
        logger.info("reusing the exported MiniLM with untrained heads in %s", directory)
        return directory
    from training.export import export_model
    from training.model import MultiTaskClassifier

    started = time.perf_counter()
    model = MultiTaskClassifier.from_backbone("all-MiniLM-L6-v2").eval()
    model.metrics = {"note": "benchmark model: packaged MiniLM with untrained heads (latency only)"}
    model.save_pretrained(directory)
    export_model(model, directory)
    logger.info("exported MiniLM with untrained heads to %s in %.1f s", directory, time.perf_counter() - started)
    return directory


# ---------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python3 -m inference.serve` on 127.0.0.1 with the given runtime, as a child process."""

    def __init__(self, model_dir: Path, runtime: str, overrides: list[str], log_dir: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{runtime}.log"
        command = [sys.executable, "-m", "inference.serve", "serve", "--model-dir", str(model_dir), "--host", "127.0.0.1",
                   "--port", str(self.port), "--runtime", runtime]
        for item in overrides:
            command += ["--set", item]
        self.log = open(self.log_path, "w")
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **OFFLINE_ENV}, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.process.pid)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{runtime} server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > START_TIMEOUT_S:
                self.stop()
                raise RuntimeError(f"{runtime} server not ready after {START_TIMEOUT_S} s")
            time.sleep(0.1)
        self.start_seconds = time.perf_counter() - started
        logger.info("%s server ready on %s in %.1f s (RSS %.0f MB)", runtime, self.base, self.start_seconds, self.rss_mb())

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# ---------------------------------------------------------------- measurements


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def single_text_latency(base: str, texts: list[str], n: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(WARMUP_REQUESTS):
            client.post("/invocations", json={"text": texts[i % len(texts)]}).raise_for_status()
        for i in range(n):
            started = time.perf_counter()
            client.post("/invocations", json={"text": texts[i % len(texts)]}).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def batched_throughput(base: str, texts: list[str], batch_size: int, n_requests: int, concurrency: int) -> float:
    batches = [[texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)] for i in range(n_requests)]

    def worker(indices: range) -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            for i in indices:
                client.post("/invocations", json={"instances": [{"text": t} for t in batches[i]]}).raise_for_status()

    with httpx.Client(base_url=base, timeout=120) as client:  # warm the batch shapes
        client.post("/invocations", json=batches[0]).raise_for_status()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, [range(k, n_requests, concurrency) for k in range(concurrency)]))
    return n_requests * batch_size / (time.perf_counter() - started)


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    rss_start_mb: float
    rss_end_mb: float
    rss_peak_mb: float


async def _load(server: ServerProcess, texts: list[str], clients: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    rss_samples = [server.rss_mb()]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await client.post("/invocations", json={"text": texts[i % len(texts)]})
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)
            i += clients

    async def monitor() -> None:
        last_count, last_time = 0, time.perf_counter()
        while time.perf_counter() < deadline:
            await asyncio.sleep(min(PROGRESS_EVERY_S, max(0.0, deadline - time.perf_counter())))
            now = time.perf_counter()
            rss_samples.append(server.rss_mb())
            logger.info("load: %d requests (%.0f req/s), %d errors, RSS %.0f MB",
                        len(latencies), (len(latencies) - last_count) / (now - last_time), errors, rss_samples[-1])
            last_count, last_time = len(latencies), now

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=server.base, timeout=30, limits=limits) as client:
        await asyncio.gather(monitor(), *(client_loop(client, k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    rss_samples.append(server.rss_mb())
    return LoadResult(len(latencies), errors, elapsed, percentile(latencies, 50), percentile(latencies, 99),
                      rss_samples[0], rss_samples[-1], max(rss_samples))


def load_test(server: ServerProcess, texts: list[str], clients: int, seconds: float) -> LoadResult:
    return asyncio.run(_load(server, texts, clients, seconds))


def int8_vs_fp32(model_dir: Path, rows: list[dict], overrides: list[str]) -> dict:
    """Label agreement and, where rows carry labels, macro-F1 of int8 and fp32 (in this process), both with
    the candidate's `--set` overrides (int8 scores depend on how texts are grouped into model calls).
    Macro-F1 is training.metrics.macro_f1, the definition evaluation and the gate use."""
    from inference.predictor import load_predictor
    from processing.settings import apply_overrides

    texts = model_inputs(rows)
    results = {}
    for runtime in ("onnx", "onnx-int8"):
        serving = ServingConfig(runtime=runtime)
        apply_overrides({"serving": serving}, overrides)  # the server's own --set serving.FIELD=VALUE parser
        predictor = load_predictor(model_dir, serving)
        predictions = []
        for start in range(0, len(texts), 32):
            predictions += predictor.predict(texts[start : start + 32])
        results[runtime] = predictions
    report: dict = {"texts": len(texts)}
    for task in ("sentiment", "intent"):
        fp32 = [p[task]["label"] for p in results["onnx"]]
        int8 = [p[task]["label"] for p in results["onnx-int8"]]
        report[f"{task}_agreement"] = float(np.mean([a == b for a, b in zip(fp32, int8)]))
        labeled = [(i, r[task]) for i, r in enumerate(rows) if r.get(task)]
        if labeled:
            truth = [label for _, label in labeled]
            report[f"{task}_macro_f1_fp32"] = macro_f1(truth, [fp32[i] for i, _ in labeled])
            report[f"{task}_macro_f1_int8"] = macro_f1(truth, [int8[i] for i, _ in labeled])
    aspects_fp32 = [tuple(p["aspects"]["labels"]) for p in results["onnx"]]
    aspects_int8 = [tuple(p["aspects"]["labels"]) for p in results["onnx-int8"]]
    report["aspects_exact_agreement"] = float(np.mean([a == b for a, b in zip(aspects_fp32, aspects_int8)]))
    return report


# ---------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    args = parse_args(argv)
    if not 0 < args.load_seconds <= MAX_LOAD_SECONDS:
        raise SystemExit(f"--load-seconds must be within (0, {MAX_LOAD_SECONDS}]")
    rows = load_rows(args.texts)
    texts = model_inputs(rows)
    work = Path(tempfile.mkdtemp(prefix="fbrain-serving-bench-"))
    untrained = args.model_dir is None
    model_dir = build_untrained_model_dir(args.export_dir or work) if untrained else args.model_dir
    logger.info("machine: %d logical CPUs, load average %s", psutil.cpu_count(), tuple(round(x, 2) for x in os.getloadavg()))

    results: dict = {"model_dir": str(model_dir), "untrained_heads": untrained, "cpus": psutil.cpu_count(),
                     "load_average_at_start": os.getloadavg()}
    # The baseline pads each model batch to its longest text, as transformers.pipeline(batch_size=N) does.
    baseline_overrides = [f"serving.sub_batch_size={args.batch_size}", "serving.group_call_overhead_tokens=0",
                          "serving.max_batch_wait_ms=0"]
    servers = [("candidate", "onnx-int8", args.overrides)] + ([] if args.no_baseline else [("baseline", "torch", baseline_overrides)])
    for role, runtime, overrides in servers:
        server = ServerProcess(model_dir, runtime, overrides, work)
        try:
            latencies = single_text_latency(server.base, texts, args.requests)
            throughput = batched_throughput(server.base, texts, args.batch_size, args.batch_requests, args.batch_concurrency)
            results[role] = {"runtime": runtime, "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                             "mean_ms": statistics.fmean(latencies), "batched_texts_per_s": throughput,
                             "start_s": server.start_seconds, "rss_mb": server.rss_mb()}
            logger.info("%s: %s", role, json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in results[role].items()}))
            if role == "candidate":
                load = load_test(server, texts, args.load_clients, args.load_seconds)
                results["load"] = load.__dict__
        finally:
            server.stop()
    results["quality"] = int8_vs_fp32(Path(model_dir), rows, args.overrides)
    results["load_average_at_end"] = os.getloadavg()
    print_report(results, args)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


def print_report(results: dict, args: argparse.Namespace) -> None:
    c, b, load, q = results["candidate"], results.get("baseline"), results["load"], results["quality"]
    ratio = c["batched_texts_per_s"] / b["batched_texts_per_s"] if b else float("nan")
    lines = [
        "",
        f"Serving benchmark: {results['cpus']} CPUs, load average {tuple(round(x, 2) for x in results['load_average_at_start'])} at start,"
        f" model {results['model_dir']}" + (" (MiniLM-L6 + UNTRAINED heads: latency only)" if results["untrained_heads"] else ""),
        f"client: this process over HTTP on 127.0.0.1; {args.requests} single-text requests, {args.batch_requests} x {args.batch_size}-text requests"
        f" from {args.batch_concurrency} clients",
        "",
        "| metric | ONNX Runtime int8, sorted sub-batches (candidate) | PyTorch eager fp32, pipeline-style padding (baseline) | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    def row(name, key, fmt, target, ok, ratio_value=None):
        base = fmt.format(b[key]) if b else "-"
        shown = "-" if ratio_value is None else f"{ratio_value:.2f}x"
        lines.append(f"| {name} | {fmt.format(c[key])} | {base} | {shown} | {target} | {verdict(ok)} |")

    row("single-text p50 (ms)", "p50_ms", "{:.2f}", f"<= {TARGETS['p50_ms']}", c["p50_ms"] <= TARGETS["p50_ms"],
        b["p50_ms"] / c["p50_ms"] if b else None)
    row("single-text p99 (ms)", "p99_ms", "{:.2f}", f"<= {TARGETS['p99_ms']}", c["p99_ms"] <= TARGETS["p99_ms"],
        b["p99_ms"] / c["p99_ms"] if b else None)
    row("batched throughput (texts/s)", "batched_texts_per_s", "{:.0f}", f">= {TARGETS['batched_texts_per_s']:.0f}",
        c["batched_texts_per_s"] >= TARGETS["batched_texts_per_s"], ratio if b else None)
    lines.append(f"| throughput vs baseline | | | {ratio:.2f}x | >= {TARGETS['throughput_ratio']}x | {verdict(ratio >= TARGETS['throughput_ratio'])} |")
    row("server start (s)", "start_s", "{:.1f}", "-", True)
    row("server RSS after tests (MB)", "rss_mb", "{:.0f}", "-", True)
    rss_growth = load["rss_end_mb"] - load["rss_start_mb"]
    lines += [
        "",
        f"Load test ({args.load_clients} concurrent clients, {load['seconds']:.0f} s, single-text requests): {load['requests']} requests"
        f" ({load['requests'] / load['seconds']:.0f}/s), errors {load['errors']} ({verdict(load['errors'] == 0)}: target 0),"
        f" p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms;"
        f" RSS {load['rss_start_mb']:.0f} -> {load['rss_end_mb']:.0f} MB (peak {load['rss_peak_mb']:.0f}, growth {rss_growth:+.0f} MB)",
        "",
        f"int8 vs fp32 on {q['texts']} texts: label agreement sentiment {q['sentiment_agreement']:.3f}, intent {q['intent_agreement']:.3f},"
        f" aspects (exact set) {q['aspects_exact_agreement']:.3f}",
    ]
    for task in ("sentiment", "intent"):
        if f"{task}_macro_f1_fp32" in q:
            drop = (q[f"{task}_macro_f1_fp32"] - q[f"{task}_macro_f1_int8"]) * 100
            note = " (untrained heads: F1 not meaningful)" if results["untrained_heads"] else ""
            lines.append(f"  {task} macro-F1 fp32 {q[f'{task}_macro_f1_fp32']:.4f}, int8 {q[f'{task}_macro_f1_int8']:.4f},"
                         f" drop {drop:+.2f} points (target <= {TARGETS['macro_f1_drop_points']}: {verdict(drop <= TARGETS['macro_f1_drop_points'])}){note}")
    lines.append(f"load average at end {tuple(round(x, 2) for x in results['load_average_at_end'])}")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
