"""The teacher's GPU run, prepared for a lent accelerator: `python -m training.teacher_gpu stage|receive|run`.

A lent machine (docs/teacher.md) has torch, transformers, tokenizers, scikit-learn and onnxruntime but no network
and none of our data; each call carries the working tree plus at most 64 MiB. So:

1. here: `stage` packs what the run needs into one bundle and cuts it into pieces under the size limit:
   the teacher encoder (packaged:all-mpnet-base-v2) and the student's (packaged:all-minilm-l6-v2) with their
   weights in bf16 (half the bytes), the train / validation / test example files (gzip; the fast tokenizer
   tokenises 60k texts in seconds there, so they travel as text), and wheels of what the project imports that the
   machine lacks (pydantic), each piece under <stage-dir>/piece-NNN/ with a manifest of sha256 sums;
2. there, one call per piece while the machine stays warm: `receive <piece folder>` copies it to /tmp/fbrain-stage
   and prints which pieces are there (so a lost /tmp shows at once);
3. there: `run` checks and joins the pieces, fine-tunes the teacher with the project's own trainer
   (training.train: bf16 autocast, length-grouped batches, class weights, early stopping), scores validation and
   test per source (training.evaluate.score_tasks, as the gate scores), writes teacher outputs for every training
   text (training.teacher_outputs) and report.json (samples/s, peak GPU memory, metrics) to --out ($OUT), then runs
   the training entry point's CUDA path for the MiniLM student once under the torchrun launcher (one process).
The same commands run on a CPU with a tiny config (tests/test_teacher_gpu.py).

Only the standard library is imported at module level: `run` first puts the carried wheels on sys.path.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Sequence

from training.checksums import file_sha256

MANIFEST = "stage_manifest.json"
BUNDLE = "bundle.tar"
PIECE_PREFIX = "piece-"
DEFAULT_STAGE_DIR = "/tmp/fbrain-stage"
DEFAULT_PIECE_MIB = 56
"""Piece size: the working tree (~4 MiB) plus one piece stays under the 64 MiB a call carries."""
SPLITS = ("train", "validation", "test")
WEIGHT_SUFFIX = ".safetensors"
MODEL_FILE_SUFFIXES = (".json", ".txt", ".model", WEIGHT_SUFFIX)
"""Top-level files of a model folder that travel (config, tokenizer, weights); onnx/ and the like stay here."""
DEVICE_WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")
"""What the training modules import (processing.settings, processing.schema) that the lent image lacks."""
WHEEL_PLATFORM_ARGS = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                       "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                       "--platform", "manylinux2014_x86_64"]


# ---------------------------------------------------------------------- stage (here)
def _add_model(archive: tarfile.TarFile, name: str, folder: Path) -> dict:
    """The model folder's top-level files under `models/<name>/`, floating-point weights cast to bf16."""
    import torch
    from safetensors.torch import load_file, save as safetensors_bytes

    files = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.endswith(MODEL_FILE_SUFFIXES):
            continue
        if path.name.endswith(WEIGHT_SUFFIX):
            tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
                       for k, v in load_file(str(path)).items()}
            data = safetensors_bytes(tensors, metadata={"format": "pt"})
        else:
            data = path.read_bytes()
        info = tarfile.TarInfo(f"models/{name}/{path.name}")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        files.append(path.name)
    if not any(f.endswith(WEIGHT_SUFFIX) for f in files):
        raise SystemExit(f"{folder} has no {WEIGHT_SUFFIX} weights to stage")
    return {"source": str(folder), "files": files}


def _add_examples(archive: tarfile.TarFile, examples_dir: Path, student_rows: int) -> dict:
    counts = {}
    for split in SPLITS:
        files = sorted((examples_dir / split).glob("*.jsonl"))
        if not files:
            raise SystemExit(f"{examples_dir / split} has no *.jsonl example files")
        lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        counts[split] = len(lines)
        for name, rows in ((f"data/{split}/examples.jsonl.gz", lines),
                           (f"student_data/{split}/examples.jsonl.gz", lines[:student_rows])):
            if name.startswith("student_data/test"):
                continue
            data = gzip.compress(("\n".join(rows) + "\n").encode("utf-8"), mtime=0)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return counts


def _add_wheels(archive: tarfile.TarFile, wheels: Sequence[str], wheel_dir: Path | None) -> list[str]:
    """Wheels from `wheel_dir` or, for the names in `wheels`, `pip download`ed for the device's Python."""
    if not wheels:
        return []
    folder = wheel_dir
    if folder is None:
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / "fbrain-stage-wheels"
        shutil.rmtree(folder, ignore_errors=True)
        versions = []
        for name in wheels:
            from importlib.metadata import version

            versions.append(f"{name}=={version(name)}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *WHEEL_PLATFORM_ARGS,
                        "-d", str(folder), *versions], check=True)
    names = []
    for wheel in sorted(Path(folder).glob("*.whl")):
        archive.add(wheel, arcname=f"wheels/{wheel.name}")
        names.append(wheel.name)
    return names


def stage(teacher: str, student: str, examples_dir: Path, stage_dir: Path, piece_mib: float = DEFAULT_PIECE_MIB,
          student_rows: int = 3000, wheels: Sequence[str] = DEVICE_WHEELS, wheel_dir: Path | None = None) -> dict:
    """Write the bundle's pieces to stage_dir/piece-NNN/ (each with the manifest); returns the manifest."""
    from training.backbone import resolve_backbone

    stage_dir = Path(stage_dir)
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)
    bundle = stage_dir / BUNDLE
    with tarfile.open(bundle, "w") as archive:
        models = {"teacher": _add_model(archive, "teacher", Path(resolve_backbone(teacher))),
                  "student": _add_model(archive, "student", Path(resolve_backbone(student)))}
        rows = _add_examples(archive, Path(examples_dir), student_rows)
        wheel_names = _add_wheels(archive, wheels, wheel_dir)
    piece_bytes = int(piece_mib * 1024 * 1024)
    pieces = []
    with open(bundle, "rb") as handle:
        number = 0
        while chunk := handle.read(piece_bytes):
            folder = stage_dir / f"{PIECE_PREFIX}{number:03d}"
            folder.mkdir()
            (folder / f"{BUNDLE}.{number:03d}").write_bytes(chunk)
            pieces.append({"file": f"{BUNDLE}.{number:03d}", "bytes": len(chunk),
                           "sha256": hashlib.sha256(chunk).hexdigest()})
            number += 1
    manifest = {"bundle_sha256": file_sha256(bundle), "bundle_bytes": bundle.stat().st_size, "pieces": pieces,
                "models": {"teacher": teacher, "student": student, **{f"{k}_files": v for k, v in models.items()}},
                "rows": rows, "wheels": wheel_names, "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    bundle.unlink()
    for index in range(len(pieces)):
        (stage_dir / f"{PIECE_PREFIX}{index:03d}" / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


# ---------------------------------------------------------------------- receive (there)
def receive(piece_dir: Path, stage_dir: Path) -> dict:
    """Copy one piece (and the manifest) into stage_dir; report which pieces are present and intact."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    for path in Path(piece_dir).iterdir():
        shutil.copyfile(path, stage_dir / path.name)
    return present_pieces(stage_dir)


def present_pieces(stage_dir: Path) -> dict:
    manifest = json.loads((stage_dir / MANIFEST).read_text(encoding="utf-8"))
    status = {}
    for piece in manifest["pieces"]:
        path = stage_dir / piece["file"]
        status[piece["file"]] = "missing" if not path.is_file() else (
            "ok" if path.stat().st_size == piece["bytes"] and file_sha256(path) == piece["sha256"] else "corrupt")
    return {"stage_dir": str(stage_dir), "pieces": status, "complete": all(v == "ok" for v in status.values())}


# ---------------------------------------------------------------------- run (there)
def unpack(stage_dir: Path, work_dir: Path) -> dict:
    """Join the pieces (sha256-checked), extract, put the wheels on sys.path, weights back to fp32."""
    state = present_pieces(stage_dir)
    if not state["complete"]:
        raise SystemExit(f"staged pieces are not complete: {state['pieces']} (was /tmp lost between calls?)")
    manifest = json.loads((stage_dir / MANIFEST).read_text(encoding="utf-8"))
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    bundle = work_dir / BUNDLE
    with open(bundle, "wb") as out:
        for piece in manifest["pieces"]:
            with open(stage_dir / piece["file"], "rb") as handle:
                shutil.copyfileobj(handle, out)
    if file_sha256(bundle) != manifest["bundle_sha256"]:
        raise SystemExit("the joined bundle's sha256 differs from the manifest's")
    with tarfile.open(bundle) as archive:
        archive.extractall(work_dir, filter="data")
    bundle.unlink()
    wheels = sorted((work_dir / "wheels").glob("*.whl")) if (work_dir / "wheels").is_dir() else []
    if wheels:
        site = work_dir / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, wheels)], check=True)
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for split_root in ("data", "student_data"):
        for archive_path in (work_dir / split_root).glob("*/examples.jsonl.gz"):
            archive_path.with_suffix("").write_bytes(gzip.decompress(archive_path.read_bytes()))
            archive_path.unlink()
    from safetensors.torch import load_file, save_file

    for weights in (work_dir / "models").glob(f"*/*{WEIGHT_SUFFIX}"):
        tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
        save_file(tensors, str(weights), metadata={"format": "pt"})
        del tensors
    return manifest


def _peak_memory_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def _score_splits(model_dir: Path, data_dir: Path, batch_size: int) -> dict:
    """Validation and test scores per task and source, as evaluation scores them (training.evaluate.score_tasks)."""
    import torch

    from processing.schema import example_model_input
    from training.config import EvaluationConfig
    from training.evaluate import score_tasks
    from training.example_rows import read_example_rows
    from training.metrics import HEADLINE_METRIC, model_aspect_thresholds
    from training.predict import load_model, predict_probabilities

    loaded = load_model(model_dir)
    loaded.model.to("cuda" if torch.cuda.is_available() else "cpu")
    thresholds = model_aspect_thresholds(loaded.metadata, loaded.label_maps["aspects"])
    scores = {}
    for split in ("validation", "test"):
        rows, _, _ = read_example_rows(data_dir / split, loaded.label_maps, keep_unlabeled=False,
                                       quarantine_duplicate_ids=False)
        started = time.perf_counter()
        probabilities = predict_probabilities(loaded, [example_model_input(r) for r in rows], batch_size=batch_size)
        seconds = time.perf_counter() - started
        tasks = score_tasks(rows, probabilities, loaded.label_maps, EvaluationConfig(), thresholds)
        scores[split] = {
            "rows": len(rows), "texts_per_second": round(len(rows) / max(seconds, 1e-9), 1),
            "tasks": {task: {"overall": (report["overall"] or {}).get(HEADLINE_METRIC[task]),
                             "metric": HEADLINE_METRIC[task], "rows": report["rows"],
                             "by_source": {source: detail.get(HEADLINE_METRIC[task])
                                           for source, detail in report["by_source"].items()}}
                      for task, report in tasks.items()}}
    return scores


def _student_cuda_check(work_dir: Path, out_dir: Path, epochs: int) -> dict:
    """training.train under the torchrun launcher (one process) on the MiniLM student: its CUDA path (bf16
    autocast on a GPU that supports it), ONNX export and parity included."""
    run_dir = work_dir / "student_run"
    config_dir = run_dir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps({
        "backbone": str(work_dir / "models" / "student"), "epochs": str(epochs), "mixed_precision": "auto",
        "log_every_steps": "20"}), encoding="utf-8")
    env = {**os.environ, "SM_INPUT_CONFIG_DIR": str(config_dir),
           "SM_CHANNEL_TRAIN": str(work_dir / "student_data" / "train"),
           "SM_CHANNEL_VALIDATION": str(work_dir / "student_data" / "validation"),
           "SM_MODEL_DIR": str(run_dir / "model"), "SM_OUTPUT_DATA_DIR": str(run_dir / "output"),
           "SM_CHECKPOINT_DIR": str(run_dir / "checkpoints"), "SM_NUM_GPUS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", "training.train"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    (out_dir / "student_cuda.log").write_text(done.stdout[-200_000:] + done.stderr[-200_000:], encoding="utf-8")
    result = {"command": " ".join(command), "returncode": done.returncode, "seconds": round(time.perf_counter() - started, 1)}
    summary_path = run_dir / "output" / "training_summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        result["metrics"] = summary["metrics"]
        result["onnx_parity"] = summary.get("onnx_parity")
    return result


def run(stage_dir: Path, out_dir: Path, work_dir: Path, epochs: int, batch_size: int, learning_rate: float,
        max_seq_length: int, student_epochs: int, skip_student: bool = False) -> dict:
    """Teacher fine-tuning, scores, teacher outputs and report.json in out_dir; then the student's CUDA path."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = unpack(stage_dir, work_dir)
    unpacked = time.perf_counter()
    import torch

    from training.config import TrainingConfig
    from training.teacher_outputs import score_examples
    from training.train import RunPaths, train

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"unpacked {manifest['bundle_bytes'] / 2**20:.0f} MiB in {unpacked - started:.0f}s; training on {device}",
          flush=True)
    data = work_dir / "data"
    config = TrainingConfig(backbone=str(work_dir / "models" / "teacher"), epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, max_seq_length=max_seq_length, mixed_precision="auto",
                            export_onnx=False, log_every_steps=50, eval_batch_size=256)
    teacher_dir = work_dir / "teacher_model"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    result = train(config, RunPaths(train_dir=str(data / "train"), validation_dir=str(data / "validation"),
                                    model_dir=str(teacher_dir), output_data_dir=str(work_dir / "teacher_output"),
                                    checkpoint_dir=str(work_dir / "teacher_checkpoints"), resume=False))
    trained = time.perf_counter()
    peak_training = _peak_memory_gib()
    scores = _score_splits(teacher_dir, data, batch_size=256)
    score_examples(teacher_dir, [data / "train", data / "validation"], out_dir / "teacher_outputs", batch_size=256)
    scored = time.perf_counter()
    report = {
        "device": device, "manifest": {k: manifest[k] for k in ("models", "rows", "bundle_bytes", "wheels")},
        "teacher": {"epochs_run": result.epochs_run, "best_epoch": result.metrics.get("best_epoch"),
                    "train_samples_per_second": result.metrics.get("train_samples_per_second"),
                    "validation": {k: v for k, v in result.metrics.items() if k.startswith("val_")},
                    "history": result.history, "config": {"epochs": epochs, "batch_size": batch_size,
                                                          "learning_rate": learning_rate,
                                                          "max_seq_length": max_seq_length}},
        "scores": scores, "peak_gpu_memory_gib": {"training": peak_training, "overall": _peak_memory_gib()},
        "seconds": {"unpack": round(unpacked - started, 1), "train": round(trained - unpacked, 1),
                    "score_and_outputs": round(scored - trained, 1)},
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    if not skip_student:
        report["student_cuda_check"] = _student_cuda_check(work_dir, out_dir, student_epochs)
        report["seconds"]["total"] = round(time.perf_counter() - started, 1)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("device", "peak_gpu_memory_gib", "seconds")}, indent=2), flush=True)
    print(f"teacher: {report['teacher']['train_samples_per_second']} samples/s, test "
          f"{ {t: v['overall'] for t, v in scores['test']['tasks'].items()} }", flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.teacher_gpu", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    staging = commands.add_parser("stage", help="here: pack the bundle into pieces under the size limit")
    staging.add_argument("--examples-dir", required=True, type=Path, help="folder with train/ validation/ test/ *.jsonl")
    staging.add_argument("--stage-dir", default=Path(".stage"), type=Path, help="where the piece-NNN folders go")
    staging.add_argument("--teacher", default="packaged:all-mpnet-base-v2", help="teacher encoder (backbone id or dir)")
    staging.add_argument("--student", default="packaged:all-minilm-l6-v2", help="student encoder for the CUDA check")
    staging.add_argument("--piece-mib", type=float, default=DEFAULT_PIECE_MIB, help="largest piece, MiB")
    staging.add_argument("--student-rows", type=int, default=3000, help="train/validation rows of the student check")
    staging.add_argument("--no-wheels", action="store_true", help="carry no wheels (the machine has pydantic)")
    staging.add_argument("--wheel-dir", type=Path, default=None, help="carry these wheels instead of downloading")
    receiving = commands.add_parser("receive", help="there: copy one piece into the stage folder")
    receiving.add_argument("piece_dir", type=Path)
    receiving.add_argument("--stage-dir", default=Path(DEFAULT_STAGE_DIR), type=Path)
    running = commands.add_parser("run", help="there: fine-tune, score, write teacher outputs and the report")
    running.add_argument("--stage-dir", default=Path(DEFAULT_STAGE_DIR), type=Path)
    running.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "teacher_gpu_out")))
    running.add_argument("--work-dir", type=Path, default=Path("/tmp/fbrain-teacher"))
    running.add_argument("--epochs", type=int, default=3)
    running.add_argument("--batch-size", type=int, default=64)
    running.add_argument("--learning-rate", type=float, default=3e-5)
    running.add_argument("--max-seq-length", type=int, default=128)
    running.add_argument("--student-epochs", type=int, default=1)
    running.add_argument("--skip-student", action="store_true", help="no MiniLM CUDA-path check")
    args = parser.parse_args(argv)
    if args.command == "stage":
        manifest = stage(args.teacher, args.student, args.examples_dir, args.stage_dir, args.piece_mib,
                         args.student_rows, () if args.no_wheels else DEVICE_WHEELS, args.wheel_dir)
        print(json.dumps({"pieces": [p["bytes"] for p in manifest["pieces"]], "rows": manifest["rows"],
                          "wheels": manifest["wheels"], "stage_dir": str(args.stage_dir)}, indent=2))
        return 0
    if args.command == "receive":
        state = receive(args.piece_dir, args.stage_dir)
        print(json.dumps(state, indent=2))
        return 0
    run(args.stage_dir, args.out, args.work_dir, args.epochs, args.batch_size, args.learning_rate,
        args.max_seq_length, args.student_epochs, args.skip_student)
    return 0


if __name__ == "__main__":
    sys.exit(main())
