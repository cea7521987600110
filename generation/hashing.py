"""SHA-256 and AutoV2 hashes of model and adapter files, with an optional on-disk cache."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def autov2(sha256_hex: str) -> str:
    """Civitai's AutoV2 hash: the SHA-256's first 10 hex digits, lower case as A1111 writes it."""
    if len(sha256_hex) != 64:
        raise ValueError("expected a 64-digit SHA-256 hex string")
    return sha256_hex[:10].lower()


class HashCache:
    """SHA-256 results kept in a JSON file by absolute path, reused while size and mtime match."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = {}
        if self._path is not None and self._path.is_file():
            try:
                loaded = json.loads(self._path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = {}
            if isinstance(loaded, dict):
                self._entries = {k: v for k, v in loaded.items() if isinstance(v, dict)}

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of ``path``, computed once per (size, mtime)."""
        resolved = Path(path).resolve()
        stat = resolved.stat()
        key = str(resolved)
        with self._lock:
            entry = self._entries.get(key)
            if (
                entry is not None
                and entry.get("size") == stat.st_size
                and entry.get("mtime_ns") == stat.st_mtime_ns
                and isinstance(entry.get("sha256"), str)
            ):
                return str(entry["sha256"])
        digest = sha256_file(resolved)
        with self._lock:
            self._entries[key] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256": digest,
            }
            self._save()
        return digest

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._path)


def weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Weight files under a model folder, sorted by relative path."""
    root = Path(folder)
    found = [p for p in root.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def folder_manifest(folder: str | os.PathLike[str], cache: HashCache | None = None) -> str:
    """A stable manifest of a folder's weight files: one ``<sha256>  <relative path>`` a line."""
    root = Path(folder)
    files = weight_files(root)
    if not files:
        raise FileNotFoundError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {root}")
    hasher = cache.sha256 if cache is not None else sha256_file
    lines = [f"{hasher(p)}  {p.relative_to(root).as_posix()}\n" for p in files]
    return "".join(lines)


def sha256_folder(folder: str | os.PathLike[str], cache: HashCache | None = None) -> str:
    """SHA-256 of the folder's weight manifest (see :func:`folder_manifest`)."""
    return hashlib.sha256(folder_manifest(folder, cache).encode("utf-8")).hexdigest()
