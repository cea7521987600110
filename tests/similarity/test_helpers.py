"""Helper threads for query work: the answer is the same with or without them, work no helper
has started is done by the caller, and errors reach the caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from similarity import compute_signals
from similarity import threads as threads_mod
from similarity.dense import DIM
from similarity.dense_store import DenseStore, DenseStoreConfig
from similarity.threads import Deferred, set_helper_threads
from tests.support import photo_like


@pytest.fixture
def helpers() -> Iterator[None]:
    """One helper thread for the test; the default count afterwards."""
    before = threads_mod.helper_threads()
    set_helper_threads(1)
    yield
    set_helper_threads(before)


def test_deferred_work_runs_in_a_helper_thread(helpers: None) -> None:
    job = Deferred(lambda: threading.current_thread().name)
    assert job.result().startswith("chopmark-query-helper")


def test_work_no_helper_started_is_done_by_the_caller(helpers: None) -> None:
    release = threading.Event()
    busy = Deferred(lambda: release.wait(10))  # occupies the only helper
    job = Deferred(lambda: threading.current_thread().name)
    assert job.result() == threading.current_thread().name  # did not wait for `busy`
    assert job.result() == threading.current_thread().name  # and is not done twice
    release.set()
    assert busy.result() is True


def test_without_helpers_the_caller_does_the_work() -> None:
    before = threads_mod.helper_threads()
    set_helper_threads(0)
    try:
        calls: list[str] = []
        job = Deferred(lambda: calls.append(threading.current_thread().name) or len(calls))
        assert calls == []  # nothing runs before it is asked for
        assert job.result() == 1 and calls == [threading.current_thread().name]
    finally:
        set_helper_threads(before)


def test_errors_in_a_helper_reach_the_caller(helpers: None) -> None:
    def fail() -> None:
        raise ValueError("broken picture")

    job = Deferred(fail)
    with pytest.raises(ValueError, match="broken picture"):
        job.result()


def test_negative_helper_count_is_refused() -> None:
    with pytest.raises(ValueError):
        set_helper_threads(-1)


@pytest.mark.parametrize("flat_max", [10_000, 500])  # exact index; IVF fast-scan
def test_a_split_search_gives_the_whole_search_answer(helpers: None, flat_max: int) -> None:
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(3000, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[rng.integers(0, len(vecs), 12)] + 0.05 * rng.normal(size=(12, DIM))
    config = DenseStoreConfig(flat_max=flat_max, min_lists=16, max_lists=16, nprobe=4)
    whole = DenseStore(DIM, config)
    split = DenseStore(DIM, DenseStoreConfig(**{**config.__dict__, "split_min": 1}))
    for store in (whole, split):
        store.add(np.arange(len(vecs), dtype=np.int64), vecs)
    assert (whole.ivf is None) == (flat_max > len(vecs))
    want = whole.search(queries, 24)
    got = split.search(queries, 24)
    np.testing.assert_array_equal(got[1], want[1])
    # Fast-scan rescales its 8-bit lookup tables per batch: the last digits may differ.
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    assert (got[1][:, 0] >= 0).all()


def test_query_signals_are_the_same_with_and_without_helpers() -> None:
    before = threads_mod.helper_threads()
    try:
        set_helper_threads(0)
        first = compute_signals(photo_like(7))
        alone, alone_mirror = first.pack(), first.local_mirror
        set_helper_threads(1)
        second = compute_signals(photo_like(7))
        helped, helped_mirror = second.pack(), second.local_mirror
    finally:
        set_helper_threads(before)
    assert helped == alone
    assert helped_mirror == alone_mirror and helped_mirror != helped["local"]
    assert len(helped["local"]) > 100  # ORB features were found


def test_two_callers_of_work_taken_back_share_one_run(helpers: None) -> None:
    release = threading.Event()
    busy = Deferred(lambda: release.wait(10))  # occupies the only helper
    runs: list[int] = []
    started = threading.Event()

    def slow() -> int:
        started.set()
        runs.append(1)
        release.wait(0.2)
        return len(runs)

    job = Deferred(slow)
    got: list[int] = []
    other = threading.Thread(target=lambda: got.append(job.result()))
    other.start()
    started.wait(5)
    got.append(job.result())
    other.join()
    release.set()
    busy.result()
    assert runs == [1] and got == [1, 1]


def test_a_querys_features_do_not_wait_for_its_mirror_images(
    helpers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every verification needs the picture's ORB features, only some the mirror image's: the
    first are handed over as soon as they are found, while the helper describes the mirror."""
    from similarity import local as local_mod

    set_helper_threads(0)
    expected = compute_signals(photo_like(9))
    want_local, want_mirror = expected.local, expected.local_mirror
    set_helper_threads(1)

    release = threading.Event()
    mirror_started = threading.Event()
    real_mirror_of = local_mod.mirror_of

    def slow_mirror_of(*args, **kwargs):  # type: ignore[no-untyped-def]
        mirror_started.set()
        release.wait(10)
        return real_mirror_of(*args, **kwargs)

    monkeypatch.setattr(local_mod, "mirror_of", slow_mirror_of)
    try:
        signals = compute_signals(photo_like(9))
        assert mirror_started.wait(10)  # the helper is on the mirror image now
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(signals.local))
        reader.start()
        reader.join(5)
        assert got == [want_local]  # read while the mirror image's features were held up
    finally:
        release.set()
    assert signals.local_mirror == want_mirror
