"""FastAPI: dependencies that authenticate and check scopes.

>>> from fastapi import Depends, FastAPI, Security
>>> from tokengate import Gate, Principal
>>> from tokengate.fastapi import authenticated, install, require
>>> app = FastAPI()
>>> install(app, Gate.from_file("tokengate.yaml"))
>>> @app.get("/items")
... async def items(who: Principal = Depends(require("read"))): ...
>>> @app.post("/items")
... async def add(who: Principal = Security(authenticated, scopes=["write"])): ...

:func:`install` keeps the gate on ``app.state.tokengate`` and answers every
:class:`~tokengate.AuthError` with the status, headers and ``{"error": ...}`` body of
``tokengate serve``. Behind :class:`tokengate.asgi.TokengateMiddleware` the dependencies reuse
the middleware's decision instead of deciding again.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Optional

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.security import SecurityScopes

from ._errors import AuthError
from ._scopes import DEFAULT_SCOPE_ATTRIBUTE, check_scopes
from ._tokengate import Gate, Principal
from .asgi import GATE_SCOPE_KEY, authenticate_scope

__all__ = ["install", "authenticated", "optional_principal", "require", "refusal_response"]

_DECIDED = "tokengate.decided"


def refusal_response(error: AuthError) -> Response:
    """``error`` as the response ``tokengate serve`` would send."""
    response = Response(content=error.body, status_code=error.status)
    for name, value in error.headers:
        response.headers[name] = value
    return response


async def _auth_error_handler(_request: Request, error: Exception) -> Response:
    assert isinstance(error, AuthError)
    return refusal_response(error)


def install(app: FastAPI, gate: Gate) -> None:
    """Makes ``gate`` the one the dependencies ask, and answers refusals as ``serve`` does."""
    app.state.tokengate = gate
    app.add_exception_handler(AuthError, _auth_error_handler)


def _gate(request: Request) -> Gate:
    gate = request.scope.get(GATE_SCOPE_KEY) or getattr(request.app.state, "tokengate", None)
    if gate is None:
        raise RuntimeError("tokengate.fastapi: call install(app, gate) or add TokengateMiddleware first")
    return gate


async def _decision(request: Request) -> Optional[Principal]:
    if GATE_SCOPE_KEY in request.scope:  # the middleware decided this request already
        return request.scope.get("state", {}).get("principal")
    if _DECIDED not in request.scope:
        principal = await authenticate_scope(_gate(request), request.scope)
        request.scope[_DECIDED] = principal
        request.state.principal = principal
    return request.scope[_DECIDED]


async def optional_principal(request: Request) -> Optional[Principal]:
    """The principal, or ``None`` on an open path without a valid token."""
    return await _decision(request)


async def authenticated(request: Request, security_scopes: SecurityScopes) -> Principal:
    """The principal; with ``Security(authenticated, scopes=[...])``, one holding every scope."""
    principal = await _decision(request)
    return check_scopes(_gate(request), principal, security_scopes.scopes, DEFAULT_SCOPE_ATTRIBUTE)


def require(
    *scopes: str, attribute: str = DEFAULT_SCOPE_ATTRIBUTE
) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A dependency giving the principal when it holds every one of ``scopes`` in ``attribute``."""

    async def dependency(request: Request) -> Principal:
        principal = await _decision(request)
        return check_scopes(_gate(request), principal, scopes, attribute)

    return dependency
