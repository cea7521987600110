"""The compiled loops of the searches for pictures within a picture (`similarity.jit`), against
the array expressions they stand for, and their compiling."""

from __future__ import annotations

import cv2
import numba
import numpy as np
import pytest
from PIL import Image

from similarity import embedded, jit, panels, pasted


def structured(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """uint8 luma with what the searches look at: flat and noisy blocks meeting at sharp seams
    (one across the whole picture each way), soft edges, gutters of one tone, and noise of every
    strength."""
    rng = np.random.default_rng(seed)
    h, w = shape
    out = np.full(shape, rng.integers(0, 256), np.float32)
    for _ in range(12):
        y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        y1, x1 = int(rng.integers(y0 + 4, h)), int(rng.integers(x0 + 4, w))
        noise = rng.normal(0, rng.uniform(0, 30), (y1 - y0, x1 - x0))
        out[y0:y1, x0:x1] = rng.integers(0, 256) + noise
    out[h // 2 :, :] += 70  # seams across the whole picture, each way
    out[:, 2 * w // 3 :] += 50
    if seed % 2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    out[:, w // 3 : w // 3 + 6] = out[h // 3 : h // 3 + 6, :] = rng.integers(0, 256)  # gutters
    return np.clip(out, 0, 255).astype(np.uint8)


SHAPES = [(384, 512), (512, 341), (130, 700), (1100, 257)]


def seams_as_arrays(p: np.ndarray) -> np.ndarray:
    out = np.zeros(p.shape, bool)
    for width, first in ((1, 2), (2, 3)):
        d = cv2.absdiff(p[:, width:], p[:, :-width])
        across = d[:, width:-width]
        beside = cv2.max(d[:, : -2 * width], d[:, 2 * width :])
        needed = cv2.max(
            cv2.convertScaleAbs(beside, alpha=pasted.SHARPNESS, beta=pasted.SHARPNESS),
            pasted.MIN_STEP,
        )
        out[:, first : first + across.shape[1]] |= across >= needed
    return out


def side_as_arrays(full: np.ndarray, upright: bool, line: int, start: int, end: int) -> float:
    s = pasted.SAMPLE
    px = (full[start:end:s, line - 3 : line + 4] if upright
          else full[line - 3 : line + 4, start:end:s].T).astype(np.int16)
    step = np.abs(np.diff(px, axis=1))
    one = step[:, 2] / (np.maximum(step[:, 1], step[:, 3]) + 1.0)
    two = np.abs(px[:, 4] - px[:, 2]) / (
        np.maximum(np.abs(px[:, 2] - px[:, 0]), np.abs(px[:, 6] - px[:, 4])) + 1.0
    )
    return max(float(np.median(one)), float(np.median(two)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", SHAPES)
def test_seam_pixels_candidate_lines_and_sides_are_as_the_array_expressions(
    seed: int, shape: tuple[int, int]
) -> None:
    full = structured(seed, shape)
    level = cv2.transpose(np.ascontiguousarray(full[:, :: pasted.SAMPLE]))
    for p in (full[:: pasted.SAMPLE], level):
        seams = pasted._sharp_seams(p)
        expected = seams_as_arrays(p)
        assert expected.any() and np.array_equal(seams.astype(bool), expected)
        window = max(2, round(pasted.MIN_RUN * min(shape) / pasted.SAMPLE))
        longest, total = pasted._column_runs(jit.frozen(seams), window)
        runs = cv2.boxFilter(expected.view(np.uint8), cv2.CV_16U, (1, window), normalize=False,
                             anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        assert np.array_equal(longest, runs[: p.shape[0] - window + 1].max(axis=0))
        assert np.array_equal(total, expected.sum(axis=0))
    h, w = shape
    rng = np.random.default_rng(seed)
    for _ in range(20):
        upright = bool(rng.integers(2))
        limit = w if upright else h
        along = h if upright else w
        line = int(rng.integers(3, limit - 4))
        start = int(rng.integers(0, along // 2))
        end = int(rng.integers(start + 20, along + 1))
        got = pasted._side_sharpness(jit.frozen(full), upright, line, start, end,
                                     pasted.SAMPLE)
        assert got == side_as_arrays(full, upright, line, start, end)


def lines_as_arrays(picture: np.ndarray, upright: bool, at: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    step = max(1, picture.shape[0 if upright else 1] // panels.LINE_SAMPLES)

    def read(idx: np.ndarray) -> np.ndarray:
        return (picture[::step, idx] if upright else picture[idx, ::step].T).astype(np.int16)

    k = len(at)
    px = read(np.concatenate([at + d for d in range(-3, 4)]))
    by = {d: px[:, (d + 3) * k : (d + 4) * k] for d in range(-3, 4)}
    centre = by[0].astype(np.float32)
    flat = np.abs(centre - centre.mean(axis=0)).mean(axis=0) <= panels.FLAT_DEVIATION

    def steps(width: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = -1, -1 + width
        across = np.abs(by[b] - by[a])
        ok = ((across > np.abs(by[a] - by[a - width])) & (across > np.abs(by[b + width] - by[b]))
              & (across >= panels.MIN_STEP)).astype(np.int32)
        n = len(ok)
        starts = (np.arange(panels.QUARTERS) * n) // panels.QUARTERS
        counts = np.diff(np.append(starts, n))
        quarters = np.add.reduceat(ok, starts, axis=0) / counts[:, None]
        return ok.sum(axis=0) / n, quarters.min(axis=0)

    one, one_q = steps(1)
    two, two_q = steps(2)
    wider = two > one
    return np.where(wider, two, one), np.where(wider, two_q, one_q), flat


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("upright", [True, False])
def test_line_strengths_and_flat_lines_are_as_the_array_expressions(
    seed: int, shape: tuple[int, int], upright: bool
) -> None:
    picture = structured(seed, shape)
    side = shape[1] if upright else shape[0]
    at = np.arange(3, side - 3)  # every line that has three either side
    lines = panels._columns_of(picture) if upright else panels._rows_of(picture)
    got = panels._strength_and_flat(lines, at)
    expected = lines_as_arrays(picture, upright, at)
    assert expected[2].any() and expected[0].max() > 0.5  # flat lines and seams among them
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(panels._flat(lines, at), expected[2])


@pytest.mark.parametrize("seed", range(12))
def test_block_statistics_are_opencvs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 300)), int(rng.integers(20, 300)))
    mask = (rng.random(shape) > rng.uniform(0.3, 0.7)).astype(np.uint8)
    if seed % 2:  # large blocks with holes; else many small ones, some touching at corners
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    got = embedded._block_stats(jit.frozen(mask))
    assert count > 2
    assert np.array_equal(got, stats[1:])


def test_warm_up_compiles_every_kernel_queries_use() -> None:
    """A picture Pillow decodes is read-only, one OpenCV or numpy makes is not: each kernel has
    the one compiled form warm-up made, whichever a query brings (no compiling in a request)."""
    jit.warm_up()
    kernels = [pasted._seam_kernel, pasted._column_runs, pasted._side_sharpness,
               panels._strength_kernel, panels._flat_kernel, embedded._block_stats]
    made = [list(k.signatures) for k in kernels]
    assert all(len(m) == 1 for m in made), made
    picture = structured(1, (512, 384))
    picture[:, 200:] = 255 - picture[:, 200:]  # an outline: its sides get checked
    decoded = np.asarray(Image.fromarray(picture))
    assert not decoded.flags.writeable
    for full in (picture, decoded, picture[10:500, 7:380]):
        work = cv2.resize(full, (full.shape[1] // 2, full.shape[0] // 2),
                          interpolation=cv2.INTER_AREA)
        pasted.find_pasted(full)
        panels.find_panels(full)
        embedded.find_embedded(full, work)
    assert [list(k.signatures) for k in kernels] == made


def test_kernels_compile_in_memory_where_no_cache_folder_is_writable(monkeypatch, caplog) -> None:
    """numba refuses to cache where no folder is writable; the kernel is compiled anyway."""
    from numba.core import caching

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])

    def total(a):  # type: ignore[no-untyped-def]
        s = 0.0
        for v in a:
            s += v
        return s

    with pytest.raises(RuntimeError, match="no locator"):
        numba.jit(nopython=True, cache=True)(total)
    with caplog.at_level("WARNING"):
        fast = jit.compiled(total)
    assert fast(np.arange(5.0)) == 10.0
    assert "compiled at each start" in caplog.text
