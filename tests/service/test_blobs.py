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
