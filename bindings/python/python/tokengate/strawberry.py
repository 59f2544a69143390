"""Strawberry GraphQL: a permission class per set of scopes.

>>> import strawberry
>>> from tokengate.strawberry import require
>>> gate = Gate.from_file("tokengate.yaml")
>>> @strawberry.type
... class Query:
...     @strawberry.field(permission_classes=[require(gate, "read")])
...     def secret(self, info: strawberry.Info) -> str:
...         return info.context["request"].state.principal.principal

Works with any Strawberry integration whose context has the request (``info.context["request"]``
or ``info.context.request``: strawberry.asgi, FastAPI, Starlette). Behind
:class:`tokengate.asgi.TokengateMiddleware` the middleware's decision is reused. A refusal is a
GraphQL error whose message is tokengate's and whose ``extensions`` carry ``code``, ``status``
and ``reason`` (a GraphQL response is 200 either way; refuse the whole request with the
middleware when the HTTP status matters).
"""

from __future__ import annotations

from typing import Any, Optional, Type

from strawberry.exceptions import StrawberryGraphQLError
from strawberry.permission import BasePermission

from ._errors import AuthError
from ._scopes import DEFAULT_SCOPE_ATTRIBUTE, check_scopes
from ._tokengate import Gate, Principal
from .asgi import GATE_SCOPE_KEY, authenticate_scope

__all__ = ["require", "principal_of"]

_DECIDED = "tokengate.decided"


def _request(info: Any) -> Any:
    context = info.context
    if isinstance(context, dict):
        return context["request"]
    return context.request


async def principal_of(gate: Gate, info: Any) -> Optional[Principal]:
    """The request's principal: the middleware's decision, else decided now (once per request)."""
    request = _request(info)
    scope = getattr(request, "scope", None)
    if scope is not None:  # Starlette / FastAPI
        if GATE_SCOPE_KEY in scope:
            return scope.get("state", {}).get("principal")
        if _DECIDED not in scope:
            scope[_DECIDED] = await authenticate_scope(gate, scope)
            request.state.principal = scope[_DECIDED]
        return scope[_DECIDED]
    raise TypeError("tokengate.strawberry needs an ASGI integration (Starlette, FastAPI, strawberry.asgi)")


def require(gate: Gate, *scopes: str, attribute: str = DEFAULT_SCOPE_ATTRIBUTE) -> Type[BasePermission]:
    """A permission class admitting principals that hold every one of ``scopes``."""

    class TokengatePermission(BasePermission):
        message = "not authenticated"

        async def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
            try:
                check_scopes(gate, await principal_of(gate, info), scopes, attribute)
            except AuthError as error:
                raise StrawberryGraphQLError(
                    error.message, extensions={"code": error.code, "status": error.status, "reason": error.reason}
                ) from None
            return True

    TokengatePermission.__name__ = f"Require({', '.join(scopes) or 'authenticated'})"
    return TokengatePermission
