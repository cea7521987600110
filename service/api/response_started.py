"""A ``send`` wrapper for ASGI middleware that must know whether the response has begun (after
that, only the app may finish it)."""

from __future__ import annotations

from starlette.types import Message, Send


class TrackedSend:
    """Passes every message on to ``send``; ``started`` once the response's head went out."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
