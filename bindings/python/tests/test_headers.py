"""tokengate.headers.read: the X-Auth-* headers of `tokengate serve`, decoded exactly."""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from tokengate import Gate, Principal
from tokengate.headers import IdentityHeaderError, percent_decoded, percent_encoded, read

from conftest import IdentityProvider, bearer, free_port


def answer(principal: str = "alice", attributes=None, tenant: str = "", unknown: str = "", **extra):
    headers = {
        "X-Auth-Principal": principal,
        "X-Auth-Tenant": tenant,
        "X-Auth-Attributes": json.dumps(attributes or {}, separators=(",", ":")),
        "X-Auth-Unknown-Attributes": unknown,
    }
    headers.update(extra)
    return headers


def test_values_decode_exactly() -> None:
    for value in ("alice", "a,b", "50%", "é ü", "line\nbreak", "tab\t", "ümlaut@example.com", ""):
        assert percent_decoded(percent_encoded(value)) == value
    for bad in ("%", "%4", "%+5", "%zz", "a b", "a,b", "%C3"):
        with pytest.raises(IdentityHeaderError):
            percent_decoded(bad)


def test_read_gives_the_principal_serve_sent() -> None:
    headers = answer(
        principal=percent_encoded("ümlaut,user"),
        attributes={"roles": ["admin", "a,b"], "Teams": ["x"]},
        tenant="acme",
        unknown="orgs,teams%2Cx",
        **{"X-Auth-Attr-roles": "admin,a%2Cb"},
    )
    principal = read(headers)
    assert principal == Principal(
        "ümlaut,user", {"roles": ["admin", "a,b"], "Teams": ["x"]}, tenant="acme", unknown_attributes={"orgs", "teams,x"}
    )
    assert read(list(headers.items())) == principal
    assert read([(k.encode(), v.encode()) for k, v in headers.items()]) == principal


def test_an_anonymous_answer_is_none() -> None:
    assert read(answer(principal="")) is None
    with pytest.raises(IdentityHeaderError):
        read(answer(principal="", attributes={"roles": ["admin"]}))


@pytest.mark.parametrize(
    "headers",
    [
        {},  # not behind serve
        {k: v for k, v in answer().items() if k != "X-Auth-Unknown-Attributes"},
        {**answer(), "x_auth_principal": "admin"},  # a client's copy under another spelling
        {**answer(), "X.Auth.Principal": "admin"},
        answer(**{"X-Auth-Attr-roles": "admin"}),  # disagrees with X-Auth-Attributes
        answer(attributes={"roles": ["a"]}, unknown="roles"),  # known and unknown at once
        {**answer(), "X-Auth-Attributes": '{"roles":["a"],"roles":["b"]}'},
        {**answer(), "X-Auth-Attributes": '{"roles":"admin"}'},
        {**answer(), "X-Auth-Principal": "a%2"},
    ],
)
def test_anything_with_two_readings_is_refused(headers) -> None:
    with pytest.raises(IdentityHeaderError):
        read(headers)


def test_a_header_twice_is_refused() -> None:
    pairs = list(answer().items()) + [("X-Auth-Principal", "admin")]
    with pytest.raises(IdentityHeaderError):
        read(pairs)


def _tokengate_bin():
    explicit = os.environ.get("TOKENGATE_BIN")
    if explicit:
        return explicit
    built = pathlib.Path(__file__).resolve().parents[3] / "target" / "debug" / "tokengate"
    return str(built) if built.exists() else shutil.which("tokengate")


def test_read_matches_the_gate_through_a_real_serve(idp: IdentityProvider, tmp_path) -> None:
    binary = _tokengate_bin()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: set TOKENGATE_BIN to the tokengate binary (cargo build)")
        pytest.skip("no tokengate binary (cargo build, or set TOKENGATE_BIN)")
    config = tmp_path / "tokengate.yaml"
    config.write_text(idp.config().replace("open_paths: [/healthz]", "open_paths: [/public/*]") + "tenancy: {mode: single, default_tenant_id: acme}\n")
    port = free_port()
    server = subprocess.Popen(
        [binary, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("tokengate serve did not start")
                time.sleep(0.05)
        token = idp.token("ES256", sub="ümlaut,user", groups=["eng", "a,b", "é"])
        decision = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=bearer(token))
        assert decision.status_code == 200, decision.text
        from_headers = read(decision.headers)
        in_process = Gate.from_yaml(config.read_text()).authenticate_sync(bearer(token), path="/v1/models")
        assert from_headers == in_process
        assert from_headers.principal == "ümlaut,user" and from_headers.tenant == "acme"
        assert from_headers.attributes["teams"] == ["eng", "a,b", "é"]
        # An open path without a token: serve answers with empty identity headers.
        anonymous = httpx.get(f"http://127.0.0.1:{port}/public/a.css")
        assert anonymous.status_code == 200 and read(anonymous.headers) is None
    finally:
        server.terminate()
        server.wait(10)
