from __future__ import annotations

import numpy as np
import pytest

from provenance.watermark import PAYLOAD_BITS, hex_to_payload, payload_to_hex
from provenance.watermark import convolutional as cc
from provenance.watermark.payload import FRAME_BITS, frame_bits, unframe_bits


def test_hex_round_trip() -> None:
    for payload in (0, 1, 0xABCDEF012345, (1 << PAYLOAD_BITS) - 1):
        text = payload_to_hex(payload)
        assert len(text) == 12
        assert hex_to_payload(text) == payload
    assert hex_to_payload("ABCDEF012345") == 0xABCDEF012345


@pytest.mark.parametrize("bad", ["", "abc", "0123456789abc", "0123456789ag", "0x23456789ab"])
def test_hex_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        hex_to_payload(bad)


@pytest.mark.parametrize("bad", [-1, 1 << PAYLOAD_BITS, 2**64, 1.5, "12", True])
def test_payload_out_of_range(bad: object) -> None:
    with pytest.raises(ValueError):
        payload_to_hex(bad)  # type: ignore[arg-type]


def test_frame_check_word_catches_any_single_flip() -> None:
    bits = frame_bits(0x123456789ABC)
    assert len(bits) == FRAME_BITS
    assert unframe_bits(bits) == 0x123456789ABC
    for i in range(FRAME_BITS):
        flipped = bits.copy()
        flipped[i] ^= 1
        assert unframe_bits(flipped) is None


def test_blank_frame_is_invalid() -> None:
    assert unframe_bits(np.zeros(FRAME_BITS, np.uint8)) is None
    assert unframe_bits(np.ones(FRAME_BITS, np.uint8)) is None


def test_viterbi_corrects_noisy_soft_values() -> None:
    rng = np.random.default_rng(7)
    failures = 0
    for _ in range(30):
        bits = rng.integers(0, 2, FRAME_BITS).astype(np.uint8)
        coded = cc.encode(bits)
        assert len(coded) == cc.coded_length(FRAME_BITS)
        soft = (2.0 * coded - 1.0) + rng.normal(0, 0.8, len(coded))
        hard_errors = int(np.sum((soft > 0) != coded))
        assert hard_errors > 0
        failures += int(np.any(cc.viterbi(soft, FRAME_BITS) != bits))
    assert failures <= 1
