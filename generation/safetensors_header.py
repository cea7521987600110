"""Read a safetensors header (tensor names, shapes, ``__metadata__``) without loading tensors."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsHeaderError(ValueError):
    """The file is not a well-formed safetensors file."""


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SafetensorsHeader:
    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]
    header_bytes: int


def read_safetensors_header(
    path: str | os.PathLike[str], max_header_bytes: int = MAX_HEADER_BYTES
) -> SafetensorsHeader:
    """Parse the JSON header: an 8-byte little-endian length, then that many bytes of JSON."""
    file_path = Path(path)
    size = file_path.stat().st_size
    with open(file_path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise SafetensorsHeaderError(f"{file_path.name}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > max_header_bytes or length > size - 8:
            raise SafetensorsHeaderError(f"{file_path.name}: implausible header length {length}")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise SafetensorsHeaderError(f"{file_path.name}: header is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SafetensorsHeaderError(f"{file_path.name}: header is not JSON") from exc
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(f"{file_path.name}: header is not a JSON object")

    raw_meta = header.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict):
        raise SafetensorsHeaderError(f"{file_path.name}: __metadata__ is not an object")
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_meta.items()}

    data_size = size - 8 - length
    tensors: dict[str, TensorEntry] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise SafetensorsHeaderError(f"{file_path.name}: bad entry for tensor {name!r}")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if (
            not isinstance(dtype, str)
            or not isinstance(shape, list)
            or not all(isinstance(d, int) and d >= 0 for d in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise SafetensorsHeaderError(f"{file_path.name}: bad entry for tensor {name!r}")
        tensors[name] = TensorEntry(dtype=dtype, shape=tuple(shape))
    return SafetensorsHeader(metadata=metadata, tensors=tensors, header_bytes=length)
