"""Real servers on 127.0.0.1 and real signed tokens for the binding's tests.

``idp`` is an identity provider stand-in: a JWKS endpoint (a threaded ``http.server``) with an
RSA, an EC P-256 and an Ed25519 key made by ``cryptography``, tokens signed by PyJWT. It can
rotate its keys, go down (503 for every fetch) and stall a fetch until released.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test/realms/main"
AUDIENCE = "my-api"
ALGORITHMS = ("RS256", "ES256", "EdDSA")


def _new_key(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _public_jwk(alg: str, key: Any, kid: str) -> Dict[str, Any]:
    algorithm = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    jwk = algorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class IdentityProvider:
    def __init__(self) -> None:
        self.keys: Dict[str, Any] = {}  # kid -> (alg, private key)
        self.published: List[str] = []
        self.down = False
        self.stall = threading.Event()
        self.stall.set()  # set: answer at once
        self.fetches = 0
        for alg in ALGORITHMS:
            self.add_key(alg)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def jwks_uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks"

    def add_key(self, alg: str, publish: bool = True) -> str:
        kid = f"{alg}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = (alg, _new_key(alg))
        if publish:
            self.published.append(kid)
        return kid

    def kid(self, alg: str) -> str:
        return next(k for k in reversed(self.published) if self.keys[k][0] == alg)

    def rotate(self, alg: str) -> str:
        """A new key for ``alg`` replaces the published one."""
        old = self.kid(alg)
        new = self.add_key(alg)
        self.published.remove(old)
        return new

    def jwks(self) -> Dict[str, Any]:
        return {"keys": [_public_jwk(self.keys[k][0], self.keys[k][1], k) for k in self.published]}

    def claims(self, **overrides: Any) -> Dict[str, Any]:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
                  "scope": "read write", "groups": ["eng"]}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, alg: str = "RS256", kid: Optional[str] = None, key: Any = None, **claims: Any) -> str:
        kid = kid or self.kid(alg)
        signing_key = key if key is not None else self.keys[kid][1]
        return jwt.encode(self.claims(**claims), signing_key, algorithm=alg, headers={"kid": kid})

    def forged(self, alg: str = "RS256", **claims: Any) -> str:
        """Signed by a key the IdP never published, under a published key's kid."""
        return self.token(alg, kid=self.kid(alg), key=_new_key(alg), **claims)

    def config(self, extra: str = "") -> str:
        return (
            "provider_config:\n"
            "  type: oauth2_token\n"
            f"  issuer: {ISSUER}\n"
            f"  audience: {AUDIENCE}\n"
            "  leeway: 0s\n"
            "  timeout: 2s\n"
            "  jwks:\n"
            f"    uri: {self.jwks_uri}\n"
            "    refresh_cooldown: 10ms\n"
            "  claims_mapping:\n"
            "    scope: scopes\n"
            "    groups: teams\n"
            "open_paths: [/healthz]\n" + extra
        )

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                idp.fetches += 1
                idp.stall.wait(30)
                if idp.down:
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps(idp.jwks()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.stall.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UvicornServer:
    """An ASGI app under a real uvicorn, on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class WerkzeugServer:
    """A WSGI app under werkzeug's threaded server, on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.thread.join(10)


def bearer(token: str) -> Dict[str, str]:
    return {"authorization": f"Bearer {token}"}
