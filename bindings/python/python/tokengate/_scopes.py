"""The scope check the adapters share."""

from __future__ import annotations

from typing import Iterable, Optional

from ._tokengate import Gate, Principal

#: The attribute scopes are read from: `claims_mapping: {scope: scopes}` in the shipped configs.
DEFAULT_SCOPE_ATTRIBUTE = "scopes"


def check_scopes(gate: Gate, principal: Optional[Principal], scopes: Iterable[str], attribute: str) -> Principal:
    """``principal`` when it holds every one of ``scopes`` in ``attribute``; else raises the
    :class:`~tokengate.AuthError` tokengate answers with (401 without a principal, 403
    ``insufficient_scope`` otherwise). An attribute the provider could not determine holds
    nothing: unknown is never read as enough."""
    if principal is None:
        raise gate.missing_credential()
    wanted = list(scopes)
    if not wanted:
        return principal
    if attribute in principal.unknown_attributes:
        raise gate.insufficient_scope(principal, f"requires scope {' '.join(wanted)}; {attribute} could not be determined")
    held = set(principal.attributes.get(attribute, ()))
    missing = [scope for scope in wanted if scope not in held]
    if missing:
        raise gate.insufficient_scope(principal, f"requires scope {' '.join(missing)}")
    return principal
