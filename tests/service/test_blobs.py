"""The content-addressed blob store: whole files only, also under concurrent writers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from service.blobs import FileBlobStore
from tests.support import all_at_once


def test_concurrent_writers_of_the_same_content_all_succeed(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    data = os.urandom(3 * 1024 * 1024)
    results, errors = all_at_once([lambda: store.put(data)] * 8)
    assert errors == []
    assert set(results) == {hashlib.sha256(data).hexdigest()}
    assert store.get(results[0]) == data
    leftovers = [p for p in store.path(results[0]).parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    store = FileBlobStore(tmp_path / "blobs")

    def refuse(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(OSError):
        store.put(b"some bytes")
    sha = hashlib.sha256(b"some bytes").hexdigest()
    assert not store.exists(sha)
    assert list(store.path(sha).parent.iterdir()) == []


def test_storing_present_bytes_renews_the_file_or_leaves_it_when_it_cannot(
    tmp_path: Path, monkeypatch
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    sha = store.put(b"kept bytes")
    path = store.path(sha)
    os.utime(path, (1_000_000, 1_000_000))
    assert store.put(b"kept bytes") == sha
    assert path.stat().st_mtime > 1_000_000  # renewed: the storage collector leaves it alone

    os.utime(path, (1_000_000, 1_000_000))
    writes: list[Path] = []

    def refuse(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "utime", refuse)
    monkeypatch.setattr(
        "service.blobs.write_atomically", lambda target, *_a, **_k: writes.append(target)
    )
    assert store.put(b"kept bytes") == sha  # another owner's file: present, not written again
    assert writes == [] and store.get(sha) == b"kept bytes"
