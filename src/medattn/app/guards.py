"""Request guards that act on the headers, before any of the body is read.

:class:`BodyGuard` (an ASGI middleware) refuses a request body larger than the
whole-request limit from its ``Content-Length`` (HTTP 413), and an
unauthenticated state-changing request (HTTP 401, or a redirect to the sign-in
page for the HTML pages) before the body is read or spooled to disk. A body
sent without ``Content-Length`` (chunked) is counted while it is read and the
request is answered 413 as soon as it passes the limit.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a body without Content-Length passes the limit."""


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Refuse over-large and unauthenticated request bodies from the headers.

    ``is_signed_in(scope)`` says whether the request carries a valid session or API token (it may
    touch the database; it runs before the body is read). Paths in ``open_paths`` (the sign-in form)
    need no authentication. Add it inside the session middleware so that ``scope["session"]`` is set.
    """

    def __init__(self, app: Any, max_body: Callable[[], int], is_signed_in: Callable[[Scope], Awaitable[bool]],
                 open_paths: frozenset[str] = frozenset({"/login"})) -> None:
        self.app = app
        self.max_body = max_body
        self.is_signed_in = is_signed_in
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.max_body()
        length = _content_length(scope)
        if length is not None and length > limit:
            await _answer(send, 413, f"request body is {length / 1e6:.1f} MB, more than the "
                                     f"{limit / 1e6:.0f} MB limit for one request (all files together)")
            return
        if scope["path"] not in self.open_paths and not await self.is_signed_in(scope):
            await self._refuse_unauthenticated(scope, send)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _refuse_unauthenticated(self, scope: Scope, send: Send) -> None:
        if scope["path"].startswith("/api/"):
            await _answer(send, 401, "sign in or send an API token", [(b"www-authenticate", b"Bearer")])
            return
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", f"/login?next={scope['path']}".encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app on a body without Content-Length, answering 413 once it passes ``limit``."""
        seen = 0
        over = False
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over:  # the app's own answer to the aborted body (e.g. a parse error) is replaced below
                return
            started = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if over and not started:
            await _answer(send, 413, f"request body is more than the {limit / 1e6:.0f} MB limit for one request")


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
