"""examples/python/ogx_app.py: an OGX-style Starlette app whose run.yaml's server.auth is
decided in-process, under a real uvicorn, with tokens from the local JWKS server."""

import importlib.util
import pathlib

import httpx

from conftest import ISSUER, IdentityProvider, UvicornServer, bearer

EXAMPLE = pathlib.Path(__file__).resolve().parents[3] / "examples" / "python" / "ogx_app.py"


def load_example():
    spec = importlib.util.spec_from_file_location("ogx_app", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ogx_example_reads_its_run_yaml(idp: IdentityProvider, tmp_path) -> None:
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        "version: 2\nimage_name: demo\napis: [inference]\nproviders:\n  inference: []\n"
        "server:\n  port: 8321\n  auth:\n    provider_config:\n      type: oauth2_token\n"
        f"      issuer: {ISSUER}\n      jwks:\n        uri: {idp.jwks_uri}\n"
    )
    app = load_example().create_app(str(run_yaml))
    with UvicornServer(app) as base, httpx.Client(base_url=base) as client:
        # Llama Stack's defaults: audience "llama-stack".
        good = idp.token("RS256", aud="llama-stack")
        response = client.get("/v1/models", headers=bearer(good))
        assert response.status_code == 200, response.text
        assert response.json()["user"]["principal"] == "alice"
        # OGX's public routes need no token.
        assert client.get("/v1/health").json() == {"status": "OK"}
        assert client.get("/v1/version").status_code == 200
        for token in (idp.token(aud="my-api"), idp.forged(aud="llama-stack"), idp.token(aud="llama-stack", exp=1, iat=0)):
            refused = client.get("/v1/models", headers=bearer(token))
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_token"
            assert refused.headers["www-authenticate"].startswith('Bearer realm="tokengate", error="invalid_token"')
        assert client.get("/v1/models").status_code == 401
