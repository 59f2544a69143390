"""Reading the identity ``tokengate serve`` sends, for an app behind a proxy that asks it.

``serve`` answers an allowed decision with ``X-Auth-Principal``, ``X-Auth-Tenant``,
``X-Auth-Attributes`` (compact JSON, non-ASCII escaped), ``X-Auth-Unknown-Attributes`` and an
``X-Auth-Attr-<name>`` per attribute with a lower-case header-token name, the proxy copies them
onto the request, and :func:`read` turns them back into the :class:`tokengate.Principal` the
provider produced. Every value but ``X-Auth-Attributes`` is percent-encoded (every byte outside
visible ASCII, and ``%`` and ``,``, as ``%XX`` of its UTF-8), lists are ``,``-joined; decoding is
exact or refused. Anything that could be read two ways -- a header twice, a copy under another
spelling (``x_auth_principal``), an ``X-Auth-Attr-*`` that disagrees with ``X-Auth-Attributes``,
a bad escape -- raises :class:`IdentityHeaderError`: the proxy let a client's copy through, and
guessing which one is tokengate's is how an attacker becomes someone else.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ._tokengate import Principal

__all__ = ["IdentityHeaderError", "read", "percent_decoded", "percent_encoded"]

PRINCIPAL = "x-auth-principal"
TENANT = "x-auth-tenant"
ATTRIBUTES = "x-auth-attributes"
UNKNOWN_ATTRIBUTES = "x-auth-unknown-attributes"
ATTRIBUTE_PREFIX = "x-auth-attr-"
_SET_BY_TOKENGATE = (PRINCIPAL, TENANT, ATTRIBUTES, UNKNOWN_ATTRIBUTES)

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_PLAIN = frozenset(range(0x21, 0x7F)) - {ord("%"), ord(",")}


class IdentityHeaderError(ValueError):
    """The X-Auth-* headers are missing, repeated, or not what tokengate sends."""


HeaderSource = Union[Mapping[str, str], Iterable[Tuple[Union[str, bytes], Union[str, bytes]]], Any]


def percent_encoded(value: str) -> str:
    """What ``serve`` sends for ``value``: the inverse of :func:`percent_decoded`."""
    return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in value.encode("utf-8"))


def percent_decoded(value: str) -> str:
    """Exactly what the provider produced; a ``%`` without two hex digits, a byte tokengate
    never sends unescaped, or bytes that are not UTF-8 raise :class:`IdentityHeaderError`."""
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%":
            match = _ESCAPE.match(value, i)
            if match is None:
                raise IdentityHeaderError("a % in an X-Auth-* value is not followed by two hex digits")
            out.append(int(match.group(1), 16))
            i += 3
            continue
        if ord(c) not in _PLAIN:
            raise IdentityHeaderError("an X-Auth-* value has a character tokengate always percent-encodes")
        out.append(ord(c))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityHeaderError("an X-Auth-* value does not decode to UTF-8") from None


def _decoded_list(value: str) -> List[str]:
    if value == "":
        return []
    return [percent_decoded(item) for item in value.split(",")]


def _text(item: Union[str, bytes]) -> str:
    return item.decode("latin-1") if isinstance(item, (bytes, bytearray)) else str(item)


def _pairs(headers: HeaderSource) -> List[Tuple[str, str]]:
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):  # Starlette's Headers: every copy, as sent
        items: Iterable[Any] = raw
    elif hasattr(headers, "items"):
        items = headers.items()
    else:
        items = headers
    return [(_text(name), _text(value)) for name, value in items]


def _folded(name: str) -> str:
    # As serve spots a client copy: case ignored, any character but a letter or digit is `-`
    # (CGI-style readers fold `_` and `.` into the same variable as `-`).
    return "".join(c.lower() if c.isascii() and c.isalnum() else "-" for c in name)


def _is_identity_header(folded: str) -> bool:
    return folded in _SET_BY_TOKENGATE or folded.startswith(ATTRIBUTE_PREFIX)


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise IdentityHeaderError(f"X-Auth-Attributes names {key!r} twice")
        out[key] = value
    return out


def read(headers: HeaderSource) -> Optional[Principal]:
    """The principal ``tokengate serve`` let the request in as, or ``None`` when it let the
    request in anonymously (an open path: ``X-Auth-Principal`` is present and empty).

    ``headers`` is any mapping or list of ``(name, value)`` pairs: a Starlette/FastAPI
    ``request.headers``, Flask's ``request.headers``, an ASGI scope's ``headers``, a dict.
    """
    seen: Dict[str, str] = {}
    for name, value in _pairs(headers):
        lower = name.lower()
        folded = _folded(name)
        if not _is_identity_header(folded):
            continue
        if folded != lower:
            raise IdentityHeaderError(f"{name} is a copy of an X-Auth-* header under another spelling")
        if lower in seen:
            raise IdentityHeaderError(f"{name} is present more than once")
        seen[lower] = value
    missing = [h for h in _SET_BY_TOKENGATE if h not in seen]
    if missing:
        raise IdentityHeaderError(
            "not behind tokengate serve, or the proxy does not pass its answer on: missing " + ", ".join(missing)
        )
    principal = percent_decoded(seen[PRINCIPAL])
    tenant = percent_decoded(seen[TENANT]) or None
    unknown = _decoded_list(seen[UNKNOWN_ATTRIBUTES])
    if principal == "":
        if seen[ATTRIBUTES] != "{}" or unknown or any(h.startswith(ATTRIBUTE_PREFIX) for h in seen):
            raise IdentityHeaderError("an anonymous answer carries attributes")
        return None
    try:
        attributes = json.loads(seen[ATTRIBUTES], object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        raise IdentityHeaderError("X-Auth-Attributes is not JSON") from None
    if not isinstance(attributes, dict) or not all(
        isinstance(values, list) and all(isinstance(v, str) for v in values) for values in attributes.values()
    ):
        raise IdentityHeaderError("X-Auth-Attributes is not an object of string lists")
    if any(name in attributes for name in unknown) or len(set(unknown)) != len(unknown):
        raise IdentityHeaderError("an attribute is both known and unknown")
    # The per-attribute copies say nothing X-Auth-Attributes does not; one that disagrees is not tokengate's.
    for header, value in seen.items():
        if not header.startswith(ATTRIBUTE_PREFIX):
            continue
        name = header[len(ATTRIBUTE_PREFIX) :]
        values = attributes.get(name)
        if values is None or values in ([], [""]) or value != ",".join(percent_encoded(v) for v in values):
            raise IdentityHeaderError(f"{header} does not match X-Auth-Attributes")
    return Principal(principal, attributes, tenant=tenant, unknown_attributes=set(unknown))
