"""The CLIP path: unavailable without a checkpoint; plumbing with a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from similarity import OpenClipEmbedder, UnavailableEmbedder, load_embedder

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16,
                   "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
}


def test_unavailable_without_checkpoint() -> None:
    emb = load_embedder(None, "ViT-B-32")
    assert isinstance(emb, UnavailableEmbedder)
    assert not emb.available and emb.reason == "no CLIP checkpoint configured"
    with pytest.raises(RuntimeError, match="no CLIP checkpoint"):
        emb.embed([Image.new("RGB", (8, 8))])


def test_unavailable_with_missing_file(tmp_path: Path) -> None:
    emb = load_embedder(tmp_path / "absent.pt", "ViT-B-32")
    assert not emb.available and "absent.pt" in str(emb.reason)


def test_tiny_random_model_plumbing(tmp_path: Path, artwork: Image.Image) -> None:
    """Randomly initialised weights: checks loading and shapes only, never accuracy."""
    import open_clip
    import torch

    (tmp_path / "chopmark-tiny-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "chopmark-tiny-test.json")
    torch.manual_seed(0)
    model = open_clip.create_model("chopmark-tiny-test", pretrained=None)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)

    emb = load_embedder(checkpoint, "chopmark-tiny-test")
    assert isinstance(emb, OpenClipEmbedder) and emb.available and emb.reason is None
    assert emb.dim == 32
    vectors = emb.embed([artwork, artwork.rotate(90), Image.new("RGB", (20, 30), "red")])
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = emb.embed([artwork])
    assert np.allclose(again[0], vectors[0], atol=1e-5)  # deterministic (eval mode)
