"""CLIP image embeddings through open_clip, from a local checkpoint only (never downloads)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image


class Embedder(Protocol):
    """Turns images into L2-normalised embeddings, or says why it cannot."""

    name: str
    available: bool
    reason: str | None
    dim: int

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(len(images), dim) float32, rows L2-normalised."""
        ...


class UnavailableEmbedder:
    """Stands in when no CLIP model can be loaded; `embed` refuses with the reason."""

    def __init__(self, reason: str, name: str = "clip:unavailable") -> None:
        self.name = name
        self.available = False
        self.reason: str | None = reason
        self.dim = 0

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise RuntimeError(f"CLIP embeddings are unavailable: {self.reason}")


class OpenClipEmbedder:
    """An open_clip model (architecture `model_name`, weights from `checkpoint`) on the CPU."""

    def __init__(self, checkpoint: Path, model_name: str, *, batch_size: int = 16) -> None:
        if ":" in model_name:
            raise ValueError("model_name must be a built-in open_clip architecture (no schema)")
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"CLIP checkpoint not found: {checkpoint}")
        import open_clip  # heavy imports only once a checkpoint is really there
        import torch

        model = open_clip.create_model(
            model_name, pretrained=None, load_weights=False, pretrained_image=False,
            pretrained_text=False, device="cpu",
        )
        open_clip.load_checkpoint(model, str(checkpoint), device="cpu")
        model.eval()
        visual = model.visual
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        self._preprocess = open_clip.image_transform(
            visual.image_size, is_train=False, mean=cfg.get("mean"), std=cfg.get("std"),
        )
        self._model = model
        self._torch = torch
        self._lock = threading.Lock()
        self._batch = batch_size
        with torch.no_grad():
            probe = self._preprocess(Image.new("RGB", (64, 64))).unsqueeze(0)
            self.dim = int(model.encode_image(probe).shape[-1])
        self.name = f"open_clip:{model_name}:{Path(checkpoint).name}"
        self.available = True
        self.reason: str | None = None

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(images), self.dim), np.float32)
        with self._lock, torch.no_grad():
            for start in range(0, len(images), self._batch):
                chunk = images[start : start + self._batch]
                batch = torch.stack([self._preprocess(im.convert("RGB")) for im in chunk])
                feats = self._model.encode_image(batch).float()
                feats = torch.nn.functional.normalize(feats, dim=-1)
                out[start : start + len(chunk)] = feats.numpy()
        return out


def load_embedder(checkpoint: Path | None, model_name: str) -> Embedder:
    """An `OpenClipEmbedder`, or an `UnavailableEmbedder` saying why not."""
    if checkpoint is None:
        return UnavailableEmbedder("no CLIP checkpoint configured")
    try:
        return OpenClipEmbedder(Path(checkpoint), model_name)
    except Exception as exc:  # any load failure leaves the screen unavailable, with its reason
        return UnavailableEmbedder(f"CLIP checkpoint {checkpoint} could not be loaded: {exc}")
