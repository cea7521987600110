"""Pictures embedded in a larger frame: a screenshot of a web page or an app, a scanned page,
a picture on a board with captions around it.

A copy inside such a frame is missed by the whole-picture signals: the frame's text, icons and
other pictures move the fingerprints and take most of the local features. This finds the
rectangles where a picture sits, so that each can be matched on its own as well.

Found on the work-size luma (longer side ``similarity.local.WORK_SIDE``; a long capture, whose
shorter side would be under ``MIN_DETECT_SIDE`` there, at that shorter side): a pixel is *busy* when
its 3x3 neighbourhood varies (standard deviation above ``BUSY_STD`` grey levels), as nearly
every pixel of a photo or a painting does and the flat background of an interface does not.
The busy mask is closed (joining a picture's few smooth pixels) and opened (dropping lines of
text, rules and icons), and each connected block is trimmed from its sides while its outer row
or column is less than ``EDGE_BUSY`` busy (the text that the closing joined to a picture's
edge). A block is kept when it covers ``MIN_SHARE`` (``MIN_SHARE_SPARSE`` in a frame that is
mostly flat, as a work padded with a plain colour) to ``MAX_SHARE`` of the frame, fills at
least ``MIN_FILL`` of its box, touches at most two sides of the frame (the textured ground
under a smooth sky in a plain photo touches three, a picture in a phone screenshot two), and is
not mostly one tone at full size: more than ``ONE_TONE_SHARE`` of its pixels within
``TONE_LEVELS`` grey levels of the commonest is a paragraph of text (paper between the
strokes), which looks busy at work size (unless the picture is bilevel, black and white
alone). The ``MAX_PARTS`` largest are returned.
Text set closer to a picture than about 3% of the frame's longer side joins its block, and a
picture of large flat areas may read as one tone: such a picture is matched as part of the
whole, as before. On 200 plain photos and paintings, 18 yield a block (an
extra query each); see ``bench/results/match_quality.md`` for what it finds in screenshots.
"""

from __future__ import annotations

import cv2
import numpy as np

from similarity.jit import compiled, frozen, warms_up

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive

BUSY_STD = 1.5
CLOSE_PX = 5
OPEN_PX = 9
MIN_SHARE = 0.04
MIN_SHARE_SPARSE = 0.003  # ... in a frame under SPARSE_BUSY busy (a work padded with flat colour)
SPARSE_BUSY = 0.1
MAX_SHARE = 0.8
MIN_FILL = 0.45
EDGE_BUSY = 0.5
MIN_SIDE_PX = 8  # at work size
MIN_DETECT_SIDE = 64  # a long capture is searched at this shorter side ...
MAX_DETECT_SIDE = 2048  # ... and at most this longer side
ONE_TONE_SHARE = 0.4
TONE_LEVELS = 4
BILEVEL_SHARE = 0.9
MAX_PARTS = 8


def find_embedded(full: np.ndarray, work: np.ndarray) -> list[Box]:
    """Boxes (in ``full``'s pixels, largest first) of pictures embedded in the uint8 luma
    ``full``, found on ``work``, the same picture at work size; empty for a plain picture."""
    work = _detection_picture(full, work)
    h, w = work.shape
    if min(h, w) < 4 * MIN_SIDE_PX:
        return []
    busy = busy_pixels(work).astype(np.uint8)
    blocks = cv2.morphologyEx(busy, cv2.MORPH_CLOSE, np.ones((CLOSE_PX, CLOSE_PX), np.uint8))
    blocks = cv2.morphologyEx(blocks, cv2.MORPH_OPEN, np.ones((OPEN_PX, OPEN_PX), np.uint8))
    stats = _block_stats(frozen(blocks))
    busy_share = busy.astype(np.float32)
    least = MIN_SHARE if busy_share.mean() >= SPARSE_BUSY else MIN_SHARE_SPARSE
    found: list[tuple[int, Box]] = []
    for x, y, bw, bh, area in stats.tolist():
        if bw * bh < least * w * h or area < MIN_FILL * bw * bh:
            continue
        box = _trimmed(busy_share, (x, y, x + bw, y + bh))
        if box is None:
            continue
        x0, y0, x1, y1 = box
        size = (x1 - x0) * (y1 - y0)
        touches = sum((x0 <= 1, y0 <= 1, x1 >= w - 1, y1 >= h - 1))
        if not (least * w * h <= size <= MAX_SHARE * w * h and touches <= 2):
            continue
        box = rescaled(box, work.shape, full.shape)
        if not _one_tone(full[box[1] : box[3], box[0] : box[2]]):
            found.append((size, box))
    found.sort(key=lambda f: -f[0])
    return [box for _, box in found[:MAX_PARTS]]


@compiled
def _block_stats(mask):  # type: ignore[no-untyped-def]
    """The 4-connected blocks of the 0/1 ``mask``, in the order their first pixels come row by
    row: left, top, width, height and the pixels each holds (OpenCV's connected-component
    statistics, worked out on the runs of set pixels along each row rather than pixel by
    pixel: labelling took most of this search's time)."""
    h, w = mask.shape
    most = h * (w // 2 + 1)
    first = np.empty(most, np.int64)  # each run: first pixel, end (exclusive), row, label
    end = np.empty(most, np.int64)
    row = np.empty(most, np.int64)
    parent = np.empty(most, np.int64)  # a run's provisional label is its index
    runs = 0
    above = 0  # the previous row's runs: from `above` to `row_start`, left to right
    for y in range(h):
        row_start = runs
        a = above
        x = 0
        while x < w:
            if not mask[y, x]:
                x += 1
                continue
            s = x
            while x < w and mask[y, x]:
                x += 1
            first[runs], end[runs], row[runs], parent[runs] = s, x, y, runs
            while a < row_start and end[a] <= s:  # runs above wholly to the left: done with
                a += 1
            b = a  # join the runs above that share a column with this one
            while b < row_start and first[b] < x:
                r1, r2 = _root(parent, b), _root(parent, runs)
                if r1 != r2:  # the younger root joins the older
                    parent[max(r1, r2)] = min(r1, r2)
                b += 1
            runs += 1
        above = row_start
    block = np.empty(runs, np.int64)
    count = 0
    for r in range(runs):  # a block's oldest run holds its first pixel
        root = _root(parent, r)
        if root == r:
            block[r] = count
            count += 1
        else:
            block[r] = block[root]
    stats = np.zeros((count, 5), np.int64)
    for b in range(count):
        stats[b, 0] = w
    for r in range(runs):
        b = block[r]
        if stats[b, 4] == 0:
            stats[b, 1] = row[r]
        stats[b, 0] = min(stats[b, 0], first[r])
        stats[b, 2] = max(stats[b, 2], end[r])  # the right edge, for now
        stats[b, 3] = row[r] + 1  # the bottom edge, for now
        stats[b, 4] += end[r] - first[r]
    for b in range(count):
        stats[b, 2] -= stats[b, 0]
        stats[b, 3] -= stats[b, 1]
    return stats


@compiled
def _root(parent, label):  # type: ignore[no-untyped-def]
    while parent[label] != label:
        parent[label] = parent[parent[label]]  # halve the path on the way
        label = parent[label]
    return label


def busy_pixels(grey: np.ndarray) -> np.ndarray:
    """Whether each pixel of a grey picture is busy: its 3x3 neighbourhood varies by more than
    ``BUSY_STD`` grey levels (standard deviation)."""
    grey = grey.astype(np.float32)
    mean = cv2.blur(grey, (3, 3))
    variance = cv2.blur(grey * grey, (3, 3)) - mean * mean
    return variance > BUSY_STD * BUSY_STD


def _detection_picture(full: np.ndarray, work: np.ndarray) -> np.ndarray:
    """``work``, unless its shorter side is under ``MIN_DETECT_SIDE`` (a long page captured
    whole): then ``full`` reduced to that shorter side, its longer side at most
    ``MAX_DETECT_SIDE``."""
    h, w = full.shape
    if min(work.shape) >= MIN_DETECT_SIDE or min(h, w) <= min(work.shape):
        return work
    f = min(MIN_DETECT_SIDE / min(h, w), MAX_DETECT_SIDE / max(h, w), 1.0)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(full, size, interpolation=cv2.INTER_AREA)


def _trimmed(busy: np.ndarray, box: Box) -> Box | None:
    """``box`` less its outer rows and columns that are under ``EDGE_BUSY`` busy, side by side
    in turns; None when too little is left."""
    x0, y0, x1, y1 = box
    for _ in range(3):
        region = busy[y0:y1, x0:x1]
        rows = region.mean(axis=1) < EDGE_BUSY
        cols = region.mean(axis=0) < EDGE_BUSY
        nx0, nx1 = x0 + _leading(cols), x1 - _leading(cols[::-1])
        ny0, ny1 = y0 + _leading(rows), y1 - _leading(rows[::-1])
        if nx1 - nx0 < MIN_SIDE_PX or ny1 - ny0 < MIN_SIDE_PX:
            return None
        if (nx0, ny0, nx1, ny1) == (x0, y0, x1, y1):
            break
        x0, y0, x1, y1 = nx0, ny0, nx1, ny1
    return x0, y0, x1, y1


def _one_tone(region: np.ndarray) -> bool:
    """Whether most of ``region`` (every other pixel) lies within a few levels of one tone."""
    sample = region[::2, ::2]
    counts = np.bincount(sample.ravel(), minlength=256)
    if counts[0] + counts[255] > BILEVEL_SHARE * sample.size:
        return False  # a bilevel (dithered) picture: its tones say nothing
    peak = int(counts.argmax())
    near = int(counts[max(0, peak - TONE_LEVELS) : peak + TONE_LEVELS + 1].sum())
    return near > ONE_TONE_SHARE * sample.size


def _leading(flags: np.ndarray) -> int:
    """How many of ``flags`` are set before the first one that is not."""
    stop = np.flatnonzero(~flags)
    return int(stop[0]) if stop.size else int(flags.size)


def box_overlap(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 for two empty ones)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def rescaled(box: Box, shape: tuple[int, ...], to_shape: tuple[int, ...]) -> Box:
    """``box`` in a picture of ``shape`` (height, width), in the pixels of the same picture at
    ``to_shape``."""
    fy, fx = to_shape[0] / shape[0], to_shape[1] / shape[1]
    x0, y0, x1, y1 = box
    return (
        int(x0 * fx),
        int(y0 * fy),
        min(to_shape[1], int(np.ceil(x1 * fx))),
        min(to_shape[0], int(np.ceil(y1 * fy))),
    )


@warms_up
def _compile() -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 1
    _block_stats(frozen(mask))
