"""ASGI middleware (Starlette, FastAPI, Strawberry's ASGI app, any ASGI 3 app).

>>> app = TokengateMiddleware(app, gate=Gate.from_file("tokengate.yaml"))
>>> app.add_middleware(TokengateMiddleware, gate=gate)           # Starlette / FastAPI

Every HTTP request and WebSocket handshake is decided before the app sees it. Let in, the
principal is ``scope["user"]`` (Starlette's ``request.user``) and ``request.state.principal``
(``None`` on an open path without a valid token); refused, the client gets what
``tokengate serve`` answers -- status, ``WWW-Authenticate``, ``Retry-After``, ``RateLimit``
fields, the ``{"error": {"code", "message"}}`` body -- and the app is not called. An
:class:`~tokengate.AuthError` the app raises before it starts its response (a scope check of
:mod:`tokengate.fastapi`) is answered the same way.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping, Optional

from ._errors import AuthError
from ._tokengate import Gate, Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["TokengateMiddleware", "authenticate_scope", "send_refusal", "GATE_SCOPE_KEY"]

#: Where the middleware leaves its gate in the scope, for the adapters' scope checks.
GATE_SCOPE_KEY = "tokengate.gate"

# RFC 6455 §7.4.1: the endpoint refuses a message that violates its policy.
_WEBSOCKET_POLICY_VIOLATION = 1008


def _raw_path(scope: Scope) -> str:
    # `path` is percent-decoded by the server; tokengate judges the path as sent (an encoded
    # `/` or `..` is refused, never decoded into another route).
    raw = scope.get("raw_path")
    if raw:
        return raw.decode("latin-1")
    from urllib.parse import quote

    return quote(scope.get("root_path", "") + scope["path"], safe="/!$&'()*+,;=:@~")


async def authenticate_scope(gate: Gate, scope: Scope) -> Optional[Principal]:
    """The gate's decision on an ASGI request (``http`` or ``websocket``)."""
    client = scope.get("client")
    return await gate.authenticate(
        scope.get("headers", []),
        method=scope.get("method", "GET"),
        path=_raw_path(scope),
        query=scope.get("query_string", b"").decode("latin-1") or None,
        client_ip=client[0] if client else None,
    )


async def send_refusal(send: Send, error: AuthError) -> None:
    """``error`` as the HTTP response ``tokengate serve`` would send."""
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in error.headers]
    headers.append((b"content-length", str(len(error.body)).encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.body})


class TokengateMiddleware:
    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            principal = await authenticate_scope(self.gate, scope)
        except AuthError as error:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": _WEBSOCKET_POLICY_VIOLATION, "reason": error.code})
            else:
                await send_refusal(send, error)
            return
        scope["user"] = principal
        scope.setdefault("state", {})["principal"] = principal
        scope[GATE_SCOPE_KEY] = self.gate
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except AuthError as error:
            if started:
                raise
            await send_refusal(send, error)
