"""Image work of requests runs on a bounded number of threads; the rest wait their turn, and
every request is still answered."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from service.api.image_work import ImageWork
from tests.support import encode, photo_like


def test_no_more_than_the_workers_run_at_once_and_the_rest_wait() -> None:
    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    go = threading.Event()  # the jobs hold their places until the test has looked
    seen: list[tuple[int, int, int]] = []

    def job(n: int) -> int:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        go.wait(30)
        time.sleep(0.01)
        with lock:
            running["now"] -= 1
        return n * n

    async def main() -> list[int]:
        work = ImageWork(2)
        results: dict[int, int] = {}

        async def one(n: int) -> None:
            results[n] = await work.run(job, n)

        async with anyio.create_task_group() as tg:
            for n in range(7):
                tg.start_soon(one, n)
            with anyio.fail_after(30):
                while work.status().waiting < 5 or work.status().busy < 2:
                    await anyio.sleep(0.01)
            st = work.status()
            seen.append((st.workers, st.busy, st.waiting))
            go.set()
        return [results[n] for n in range(7)]

    assert anyio.run(main) == [n * n for n in range(7)]
    assert seen == [(2, 2, 5)]
    assert running["most"] == 2


def test_workers_must_be_positive() -> None:
    async def make() -> None:
        ImageWork(0)

    with pytest.raises(ValueError, match="at least 1"):
        anyio.run(make)


def test_with_one_image_worker_concurrent_checks_are_all_answered(settings, runtime, make_key):
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    one = settings.model_copy(update={"image_workers": 1})
    h = {"Authorization": f"Bearer {make_key('moderate')}"}
    uploads = [encode(photo_like(9400 + i)) for i in range(6)]
    with TestClient(create_app(one, runtime=runtime)) as client:

        def check(data: bytes) -> int:
            r = client.post("/v1/moderation/check", files={"file": ("q.jpg", data)}, headers=h)
            return r.status_code

        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(check, uploads))
        metrics = client.get("/metrics").text
    assert codes == [200] * 6
    assert "chopmark_image_workers 1.0" in metrics
    assert "chopmark_image_work_waiting 0.0" in metrics
    with runtime.pool.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM moderation_checks").fetchone()["n"]
    assert n == 6


def test_work_running_when_its_request_is_cancelled_is_seen_through_and_none_starts_after() -> None:
    """The stop grace ran out: a request whose image work is running gets its result (what the
    work did is answered, not hidden behind an error); once the lane is closed, new work is
    refused with ImageWorkStopped (answered 503) rather than failing inside the thread pool."""
    from service.api.image_work import ImageWorkStopped

    started = threading.Event()

    def slow() -> str:
        started.set()
        time.sleep(0.3)
        return "recorded"

    async def main() -> tuple[str, bool]:
        import asyncio

        work = ImageWork(1)
        task = asyncio.ensure_future(work.run(slow))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel("stop grace ran out")
        result = await task
        closing = asyncio.get_running_loop().run_in_executor(None, work.close)
        await closing
        with pytest.raises(ImageWorkStopped):
            await work.run(slow)
        return result, task.cancelled()

    assert anyio.run(main) == ("recorded", False)


def test_an_error_of_the_work_itself_while_the_lane_closes_is_not_taken_for_the_stop() -> None:
    """Only work the closed lane refused to start is ImageWorkStopped (503, retry); a
    RuntimeError the work raised reaches the caller as itself, also while the lane closes."""
    from service.api.image_work import ImageWorkStopped

    started, release = threading.Event(), threading.Event()

    def failing() -> str:
        started.set()
        release.wait(10)
        raise RuntimeError("the work's own failure")

    async def main() -> BaseException | None:
        import asyncio

        work = ImageWork(1)
        task = asyncio.ensure_future(work.run(failing))
        while not started.is_set():
            await asyncio.sleep(0.01)
        closing = asyncio.get_running_loop().run_in_executor(None, work.close)
        await asyncio.sleep(0.05)  # close() has marked the lane closed and waits for the work
        release.set()
        await closing
        try:
            await task
        except BaseException as exc:  # the test looks at which one it is
            return exc
        return None

    raised = anyio.run(main)
    assert isinstance(raised, RuntimeError) and not isinstance(raised, ImageWorkStopped)
    assert str(raised) == "the work's own failure"
