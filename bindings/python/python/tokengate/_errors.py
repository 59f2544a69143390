"""The exceptions tokengate raises (the Rust extension raises these very classes)."""

from __future__ import annotations

from typing import List, Optional, Tuple


class ConfigError(ValueError):
    """A configuration tokengate cannot run: the message names the field and, for a file, the file."""


class AuthError(Exception):
    """A refused request, with everything `tokengate serve` would answer it with.

    ``status`` is 400, 401, 403, 429, 500 or 503; ``code`` the RFC 6750 / tokengate error code
    (``invalid_token``, ``invalid_request``, ``insufficient_scope``, ``temporarily_unavailable``, ``rate_limited``, ...); ``reason`` the typed reason
    (``signature``, ``claim exp``, ``claim aud``, ``policy``, ``missing_credential``, ...) to branch on, never the wording;
    ``message`` the body's ``error.message``; ``headers`` the response headers (``Content-Type``,
    ``Cache-Control``, ``WWW-Authenticate``, ``Retry-After``, ``RateLimit``, ...) and ``body``
    the JSON body, both exactly as ``serve`` sends them.
    """

    status: int
    code: str
    message: str
    reason: str
    www_authenticate: Optional[str]
    headers: List[Tuple[str, str]]
    body: bytes

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        reason: str,
        www_authenticate: Optional[str],
        headers: List[Tuple[str, str]],
        body: bytes,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        self.www_authenticate = www_authenticate
        self.headers = list(headers)
        self.body = body

    @property
    def retry_after(self) -> Optional[int]:
        """Seconds of ``Retry-After`` (a 503 or a 429), else ``None``."""
        for name, value in self.headers:
            if name.lower() == "retry-after":
                return int(value)
        return None

    def __repr__(self) -> str:
        return f"AuthError(status={self.status}, code={self.code!r}, reason={self.reason!r}, message={self.message!r})"
