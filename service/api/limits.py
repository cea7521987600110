"""ASGI middleware that refuses request bodies over the configured size with 413."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.response_started import TrackedSend


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, send)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyTooLarge:
            if not tracked.started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        said = f"request body is larger than the limit of {self.max_bytes} bytes"
        if scope.get("path", "").startswith("/portal/"):  # a person at a browser: a page
            body, kind = _page(self.max_bytes), b"text/html; charset=utf-8"
        else:
            body, kind = json.dumps({"detail": said}).encode(), b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", kind)],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _page(max_bytes: int) -> bytes:
    mib = max_bytes / (1024 * 1024)
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Too large · chopmark</title>"
        "<h1>That upload is too large</h1>"
        f"<p>One upload may hold at most {mib:.0f} MB in all. Go back and send fewer or smaller "
        "files at a time, or return to <a href=/portal/works>your works</a>.</p>"
    ).encode()
