"""Request limits enforced before any route runs: header and body sizes (4xx problems)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLarge, HeadersTooLarge, ServiceError
from service.problems import PROBLEMS, problem_response

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestLimits:
    """Refuses oversized headers (431) and bodies (413) without reading them into a route.

    A body is buffered here up to the limit and handed on whole, so every route, also
    those parsing bodies through FastAPI, sees the same limit and answers 413.
    """

    def __init__(self, app: ASGIApp, *, body_bytes: int, header_bytes: int) -> None:
        self.app = app
        self.body_bytes = body_bytes
        self.header_bytes = header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        if sum(len(k) + len(v) for k, v in headers) > self.header_bytes:
            await _refuse(HeadersTooLarge(self.header_bytes), scope, receive, send)
            return
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = dict(headers).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.body_bytes:
            await _refuse(BodyTooLarge(self.body_bytes), scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: let the app see the disconnect as usual.
                await self.app(scope, _replay([message]), send)
                return
            size += len(message.get("body", b""))
            if size > self.body_bytes:
                await _refuse(BodyTooLarge(self.body_bytes), scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, _replay([{"type": "http.request", "body": body,
                                        "more_body": False}]), send)


def _replay(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive


async def _refuse(exc: ServiceError, scope: Scope, receive: Receive, send: Send) -> None:
    status, type_, title = PROBLEMS[type(exc)]
    headers = [(b"connection", b"close")] if status == 413 else []
    response = problem_response(status, type_, title, str(exc))
    response.raw_headers.extend(headers)
    await response(scope, receive, send)
