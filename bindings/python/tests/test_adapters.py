"""Every adapter in front of a real server: FastAPI and Strawberry under uvicorn, Flask under
werkzeug; refusals must be what the gate (and so `tokengate serve`) answers, byte for byte."""



import json
from typing import Any, Dict, Optional

import httpx
from fastapi import Request
import pytest

from tokengate import AuthError, Gate, Principal

from conftest import IdentityProvider, UvicornServer, WerkzeugServer, bearer


def refusal_of(gate: Gate, headers: Dict[str, str], path: str = "/") -> AuthError:
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync(headers, path=path)
    return refused.value


def assert_same_refusal(response: httpx.Response, error: AuthError) -> None:
    assert response.status_code == error.status
    assert response.content == error.body
    for name, value in error.headers:
        assert response.headers[name] == value, name


POLICY = (
    "route_policy:\n  default: forbid\n  rules:\n"
    "    - path: /admin*\n      forbid: {attribute: teams, none_of: [ops]}\n"
    "    - path: '*'\n      permit: all\n"
)


@pytest.fixture
def fastapi_app(idp: IdentityProvider):
    from fastapi import Depends, FastAPI, Security

    from tokengate.asgi import TokengateMiddleware
    from tokengate.fastapi import authenticated, install, optional_principal, require

    gate = Gate.from_yaml(idp.config(POLICY))
    app = FastAPI()
    install(app, gate)

    @app.get("/items")
    async def items(who: Principal = Depends(require("read"))) -> Dict[str, Any]:
        return {"principal": who.principal}

    @app.get("/delete")
    async def delete(who: Principal = Security(authenticated, scopes=["delete"])) -> Dict[str, Any]:
        return {"principal": who.principal}

    @app.get("/admin/users")
    async def admin(who: Principal = Depends(authenticated)) -> Dict[str, Any]:
        return {"principal": who.principal}

    @app.get("/healthz")
    async def health(who: Optional[Principal] = Depends(optional_principal)) -> Dict[str, Any]:
        return {"principal": who.principal if who else None}

    # The same routes behind the middleware: request.state.principal and scope["user"].
    inner = FastAPI()
    install(inner, gate)

    @inner.get("/whoami")
    async def whoami(request: Request, who: Principal = Depends(require("write"))) -> Dict[str, Any]:
        assert request.state.principal is who and request.scope["user"] is who
        return {"principal": request.user.display_name}

    @inner.get("/needs-delete")
    async def needs_delete(who: Principal = Depends(require("delete"))) -> Dict[str, Any]:
        return {}

    app.mount("/mw", TokengateMiddleware(inner, gate=gate))
    return gate, app


def test_fastapi_under_uvicorn(idp: IdentityProvider, fastapi_app) -> None:
    gate, app = fastapi_app
    with UvicornServer(app) as base, httpx.Client(base_url=base) as client:
        good = idp.token("ES256")
        assert client.get("/items", headers=bearer(good)).json() == {"principal": "alice"}
        # Forged, expired, wrong audience: 401 exactly as the gate answers.
        for token in (idp.forged(), idp.token(exp=1, iat=0), idp.token(aud="other")):
            response = client.get("/items", headers=bearer(token))
            assert_same_refusal(response, refusal_of(gate, bearer(token), "/items"))
            assert response.status_code == 401
        missing = client.get("/items")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="tokengate"'
        # Scopes: the token has read and write, not delete.
        refused = client.get("/delete", headers=bearer(good))
        assert refused.status_code == 403
        body = refused.json()["error"]
        assert body["code"] == "insufficient_scope" and "delete" in body["message"]
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        # Route policy 403, as the gate decides it.
        response = client.get("/admin/users", headers=bearer(good))
        assert_same_refusal(response, refusal_of(gate, bearer(good), "/admin/users"))
        assert response.status_code == 403
        assert client.get("/admin/users", headers=bearer(idp.token(groups=["ops"]))).status_code == 200
        # An open path: in without a token, with the principal when the token is valid.
        assert client.get("/healthz").json() == {"principal": None}
        assert client.get("/healthz", headers=bearer(good)).json() == {"principal": "alice"}
        # Behind the middleware.
        assert client.get("/mw/whoami", headers=bearer(good)).json() == {"principal": "alice"}
        response = client.get("/mw/whoami", headers=bearer(idp.forged("EdDSA")))
        assert_same_refusal(response, refusal_of(gate, bearer(idp.forged("EdDSA"))))
        assert client.get("/mw/needs-delete", headers=bearer(good)).status_code == 403
        # A path with two readings never reaches the app.
        assert client.get("/mw/a%2F..%2Fwhoami", headers=bearer(good)).status_code == 400


def test_fastapi_identity_provider_down_is_a_503(idp: IdentityProvider, fastapi_app) -> None:
    idp.down = True
    _, app = fastapi_app
    with UvicornServer(app) as base, httpx.Client(base_url=base) as client:
        response = client.get("/items", headers=bearer(idp.token()))
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "temporarily_unavailable"


def test_key_rotation_behind_fastapi(idp: IdentityProvider, fastapi_app) -> None:
    _, app = fastapi_app
    with UvicornServer(app) as base, httpx.Client(base_url=base) as client:
        assert client.get("/items", headers=bearer(idp.token("RS256"))).status_code == 200
        new_kid = idp.rotate("RS256")
        assert client.get("/items", headers=bearer(idp.token("RS256", kid=new_kid))).status_code == 200


def test_flask_under_werkzeug(idp: IdentityProvider) -> None:
    from flask import Flask, g

    from tokengate.flask import require

    gate = Gate.from_yaml(idp.config(POLICY))
    app = Flask(__name__)

    @app.get("/items")
    @require(gate, "read")
    def items() -> Dict[str, Any]:
        return {"principal": g.principal.principal, "teams": g.principal.attributes["teams"]}

    @app.get("/delete")
    @require(gate, "delete")
    def delete() -> Dict[str, Any]:
        return {}

    @app.get("/admin/users")
    @require(gate)
    def admin() -> Dict[str, Any]:
        return {"principal": g.principal.principal}

    @app.get("/files/<path:name>")
    @require(gate)
    def files(name: str) -> Dict[str, Any]:
        return {"name": name}

    @app.get("/healthz")
    @require(gate, optional=True)
    def health() -> Dict[str, Any]:
        return {"principal": g.principal.principal if g.principal else None}

    with WerkzeugServer(app) as base, httpx.Client(base_url=base) as client:
        good = idp.token("EdDSA")
        assert client.get("/items", headers=bearer(good)).json() == {"principal": "alice", "teams": ["eng"]}
        for token in (idp.forged("RS256"), idp.token(exp=1, iat=0), idp.token(aud="other")):
            assert_same_refusal(client.get("/items", headers=bearer(token)), refusal_of(gate, bearer(token), "/items"))
        assert client.get("/delete", headers=bearer(good)).status_code == 403
        response = client.get("/admin/users", headers=bearer(good))
        assert_same_refusal(response, refusal_of(gate, bearer(good), "/admin/users"))
        assert client.get("/healthz").json() == {"principal": None}
        # The path as sent is judged, not PATH_INFO's decoding of it.
        assert client.get("/files/a", headers=bearer(good)).json() == {"name": "a"}
        assert client.get("/files/%2e%2e/secret", headers=bearer(good)).status_code == 400
        new_kid = idp.rotate("EdDSA")
        assert client.get("/items", headers=bearer(idp.token("EdDSA", kid=new_kid))).status_code == 200
        idp.down = True
        gate_down = Gate.from_yaml(idp.config())
        assert refusal_of(gate_down, bearer(good)).status == 503


def test_strawberry_under_uvicorn(idp: IdentityProvider) -> None:
    import strawberry
    from strawberry.asgi import GraphQL

    from tokengate.strawberry import principal_of, require

    gate = Gate.from_yaml(idp.config())

    @strawberry.type
    class Query:
        @strawberry.field(permission_classes=[require(gate, "read")])
        async def me(self, info: strawberry.Info) -> str:
            principal = await principal_of(gate, info)
            return principal.principal

        @strawberry.field(permission_classes=[require(gate, "delete")])
        def purge(self) -> str:
            return "purged"

        @strawberry.field
        def public(self) -> str:
            return "hello"

    app = GraphQL(strawberry.Schema(query=Query))
    with UvicornServer(app) as base, httpx.Client(base_url=base) as client:

        def ask(query: str, token: Optional[str] = None) -> Dict[str, Any]:
            headers = bearer(token) if token else {}
            return client.post("/graphql", json={"query": query}, headers=headers).json()

        good = idp.token("ES256")
        assert ask("{ me }", good) == {"data": {"me": "alice"}}
        assert ask("{ public }") == {"data": {"public": "hello"}}
        for token, status in ((None, 401), (idp.forged("ES256"), 401), (idp.token(exp=1, iat=0), 401), (good, 403)):
            query = "{ purge }" if token == good else "{ me }"
            errors = ask(query, token)["errors"]
            assert errors[0]["extensions"]["status"] == status, (token, errors)
        expired = ask("{ me }", idp.token(exp=1, iat=0))["errors"][0]
        assert expired["extensions"]["reason"] == "claim exp"
        idp.down = True
        fresh = Gate.from_yaml(idp.config())
        assert refusal_of(fresh, bearer(good)).status == 503
