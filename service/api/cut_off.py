"""ASGI middleware: a request the server cuts off when it stops is answered 503, not 500.

On a stop the server waits ``CHOPMARK_SHUTDOWN_GRACE_SECONDS`` for requests in flight, then
cancels the tasks of those still going (a long queue of checks under overload). Left alone, the
server answers each with a plain-text 500 and logs a traceback. Here a request not yet answered
gets a JSON 503 with ``Retry-After``, so a client knows to send it again (to this service once it
is back, or to another process). Image work already running when the grace ran out is seen
through and answered as usual (:class:`service.api.image_work.ImageWork`), so a moderation
check is never recorded behind a 503; one cut off while it waited its turn never ran.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.response_started import TrackedSend

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
DETAIL = "the service is stopping and cut this request off before answering it; retry it"


class AnswerCutOffRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if tracked.started or task is None:
                raise
            task.uncancel()
            log.warning(
                "%s %s cut off by the stop grace before it was answered: answered 503",
                scope.get("method"),
                scope.get("path"),
            )
            body = json.dumps({"detail": DETAIL}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
