"""Query-time FAISS work runs on one OpenMP thread in whichever thread serves the query."""

import threading

import faiss

from similarity import MatchIndex, compute_signals, match
from tests.support import photo_like


def test_a_query_thread_searches_with_one_openmp_thread() -> None:
    work = compute_signals(photo_like(41), for_query=False)
    index = MatchIndex()
    index.add([1], [work])
    seen: dict[str, int] = {}

    def serve() -> None:
        seen["before"] = faiss.omp_get_max_threads()
        found = match(compute_signals(photo_like(41)), index, lambda ids: {1: work.local})
        seen["found"] = len(found)
        seen["after"] = faiss.omp_get_max_threads()

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    assert seen["found"] == 1
    assert seen["after"] == 1
