import hashlib
import os
from pathlib import Path

import pytest

from generation.hashing import HashCache, autov2, folder_manifest, sha256_folder


def test_autov2_is_the_first_ten_hex_digits() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert autov2(digest) == digest[:10]
    with pytest.raises(ValueError):
        autov2("abc")


def test_folder_manifest_covers_weights_only_and_is_stable(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"unet")
    (tmp_path / "vae.bin").write_bytes(b"vae")
    (tmp_path / "model_index.json").write_text("{}")
    manifest = folder_manifest(tmp_path)
    assert manifest.splitlines()[0].endswith("  unet/w.safetensors")
    assert "model_index.json" not in manifest
    before = sha256_folder(tmp_path)
    (tmp_path / "model_index.json").write_text('{"changed": true}')
    assert sha256_folder(tmp_path) == before
    (tmp_path / "vae.bin").write_bytes(b"other vae")
    assert sha256_folder(tmp_path) != before
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        sha256_folder(tmp_path / "empty")


def test_hash_cache_persists_and_notices_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"one")
    cache = HashCache(tmp_path / "hashes.json")
    assert cache.sha256(path) == hashlib.sha256(b"one").hexdigest()
    assert HashCache(tmp_path / "hashes.json").sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two!")
    os.utime(path, ns=(1, 1))
    assert cache.sha256(path) == hashlib.sha256(b"two!").hexdigest()
