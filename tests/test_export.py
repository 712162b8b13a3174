"""ONNX export: contract names, dynamic axes, parity with PyTorch, int8 quantisation."""
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import tiny_example_rows
from training.export import compare, export_onnx
from training.model import MultiTaskClassifier

OUTPUTS = ["sentiment_logits", "intent_logits", "aspect_logits", "embedding"]


def test_onnx_graph_has_the_contract_inputs_outputs_and_dynamic_axes(tiny_model_dir):
    graph = onnx.load(str(tiny_model_dir / "onnx" / "model.onnx")).graph
    assert [o.name for o in graph.output] == OUTPUTS
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[1].dim_param, f"{tensor.name} has fixed axes"


def test_fp32_onnx_matches_pytorch_on_other_batch_and_sequence_sizes(tiny_model_dir):
    model = MultiTaskClassifier.from_pretrained(tiny_model_dir)
    session = ort.InferenceSession(str(tiny_model_dir / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    for texts in (["ok"], ["a much longer text about a parcel that never arrived " * 3, "short", "medium length one"]):
        encoded = model.tokenizer(texts, padding=True, return_tensors="np")
        onnx_out = session.run(OUTPUTS, {k: v.astype(np.int64) for k, v in encoded.items()})
        torch_out = model.predict_logits(texts)
        for name, value in zip(OUTPUTS, onnx_out):
            np.testing.assert_allclose(value, torch_out[name].numpy(), atol=1e-4)
        assert onnx_out[3].shape == (len(texts), model.encoder.config.hidden_size)


def test_parity_report_with_labels_and_int8_file(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    shutil.rmtree(model_dir / "onnx")
    rows = tiny_example_rows()["test"]
    model = MultiTaskClassifier.from_pretrained(model_dir)
    labels = {
        "sentiment": [model.label_maps["sentiment"].index(r["sentiment"]) for r in rows],
        "intent": [model.label_maps["intent"].index(r["intent"]) for r in rows],
        "aspects": [[int(a in r["aspects"]) for a in model.label_maps["aspects"]] for r in rows],
    }
    report = export_onnx(model_dir, [r["text"] for r in rows], labels)
    assert report.model == "int8" and report.n_texts == len(rows)
    for task in ("sentiment", "intent", "aspects"):
        assert report.tasks[task].macro_f1_diff is not None
        assert 0.0 <= report.tasks[task].label_agreement <= 1.0
    fp32_size = (model_dir / "onnx" / "model.onnx").stat().st_size
    assert (model_dir / "onnx" / "model.int8.onnx").stat().st_size < 0.6 * fp32_size
    saved = json.loads((model_dir / "onnx" / "parity.json").read_text())
    fp32 = next(r for r in saved["reports"] if r["model"] == "fp32")
    assert fp32["min_label_agreement"] == 1.0
    assert max(t["max_abs_logit_diff"] for t in fp32["tasks"].values()) < 1e-4
    assert fp32["tasks"]["sentiment"]["macro_f1_diff"] == pytest.approx(0.0)


def test_parity_needs_texts(tiny_model_dir):
    model = MultiTaskClassifier.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="at least one text"):
        compare(model, tiny_model_dir / "onnx" / "model.onnx", [])
