"""Flask (any WSGI app through Flask's ``request``): a decorator that authenticates.

>>> from flask import Flask, g
>>> from tokengate import Gate
>>> from tokengate.flask import require
>>> gate = Gate.from_file("tokengate.yaml")
>>> app = Flask(__name__)
>>> @app.get("/items")
... @require(gate, "read")
... def items():
...     return {"who": g.principal.principal}

The decision runs on tokengate's runtime while the worker thread waits with the GIL released
(``Gate.authenticate_sync``), so other threads keep serving. Let in, the principal is
``g.principal``; refused, the view is not called and the client gets what ``tokengate serve``
answers (status, ``WWW-Authenticate``, ``Retry-After``, the ``{"error": ...}`` body).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import quote

from flask import Response, g, request

from ._errors import AuthError
from ._scopes import DEFAULT_SCOPE_ATTRIBUTE, check_scopes
from ._tokengate import Gate, Principal

__all__ = ["require", "authenticate_request", "refusal_response"]

F = TypeVar("F", bound=Callable[..., Any])


def refusal_response(error: AuthError) -> Response:
    """``error`` as the response ``tokengate serve`` would send."""
    return Response(error.body, status=error.status, headers=error.headers)


def _target(environ: Any) -> str:
    # The request target as sent: PATH_INFO is percent-decoded, and tokengate judges the path
    # before any decoding (an encoded `/` or `..` is refused, not routed).
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
    query = environ.get("QUERY_STRING", "")
    return quote(path, safe="/!$&'()*+,;=:@~") + (f"?{query}" if query else "")


def authenticate_request(gate: Gate) -> Optional[Principal]:
    """The gate's decision on the current request (raises :class:`~tokengate.AuthError`)."""
    return gate.authenticate_sync(
        request.headers,
        method=request.method,
        path=_target(request.environ),
        client_ip=request.remote_addr,
    )


def require(gate: Gate, *scopes: str, attribute: str = DEFAULT_SCOPE_ATTRIBUTE, optional: bool = False) -> Callable[[F], F]:
    """Decides each request before the view; ``optional=True`` lets an open path's anonymous
    request through with ``g.principal = None`` (scopes then refuse it)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                principal = authenticate_request(gate)
                if scopes or not optional:
                    principal = check_scopes(gate, principal, scopes, attribute)
            except AuthError as error:
                return refusal_response(error)
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
