"""The CLIP BPE tokenizer built offline from the vocabulary that open_clip ships.

CLIP's vocabulary is derived from its merge list: the 256 byte-level characters, the same with an
``</w>`` end-of-word suffix, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``
(49408 tokens in all).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from functools import cache
from importlib.resources import files
from pathlib import Path

from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 49408
MODEL_MAX_LENGTH = 77
_MERGE_COUNT = 49152 - 256 - 2


def _byte_characters() -> list[str]:
    """Printable stand-ins for the 256 byte values, in CLIP's (GPT-2's) order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


@cache
def clip_merges() -> tuple[str, ...]:
    """The merge rules (``"a b"``) from open_clip's ``bpe_simple_vocab_16e6.txt.gz``."""
    packed = (files("open_clip") / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(packed).decode("utf-8").split("\n")
    return tuple(lines[1 : _MERGE_COUNT + 1])


@cache
def clip_vocab() -> dict[str, int]:
    """Token → id, laid out as CLIP lays it out."""
    chars = _byte_characters()
    tokens = [*chars, *(c + "</w>" for c in chars)]
    tokens += ["".join(merge.split(" ")) for merge in clip_merges()]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    if len(tokens) != VOCAB_SIZE:
        raise RuntimeError(f"CLIP vocabulary has {len(tokens)} tokens, expected {VOCAB_SIZE}")
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer_files(folder: str | os.PathLike[str]) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` into ``folder`` (created if missing)."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    (target / "vocab.json").write_text(json.dumps(clip_vocab(), ensure_ascii=False), "utf-8")
    merges = "#version: 0.2\n" + "\n".join(clip_merges()) + "\n"
    (target / "merges.txt").write_text(merges, "utf-8")
    return target


def build_clip_tokenizer(pad_token: str = EOS_TOKEN) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` (max length 77) built without any download.

    ``pad_token`` is ``<|endoftext|>`` for SD 1.x and SDXL's first encoder, ``!`` for SDXL's second.
    """
    with tempfile.TemporaryDirectory(prefix="clip-tokenizer-") as tmp:
        write_tokenizer_files(tmp)
        return CLIPTokenizer.from_pretrained(
            tmp,
            model_max_length=MODEL_MAX_LENGTH,
            pad_token=pad_token,
            local_files_only=True,
        )
