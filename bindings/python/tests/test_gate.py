"""Gate.authenticate / authenticate_sync against a real JWKS server with real signed tokens."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest

import tokengate
from tokengate import AuthError, ConfigError, Gate, Principal

from conftest import ALGORITHMS, AUDIENCE, ISSUER, IdentityProvider, bearer


def decide(gate: Gate, *args, **kwargs):
    """`await gate.authenticate(...)` in a fresh event loop (the awaitable binds to the running loop)."""

    async def main():
        return await gate.authenticate(*args, **kwargs)

    return asyncio.run(main())


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_valid_token_is_its_principal(idp: IdentityProvider, alg: str) -> None:
    gate = Gate.from_yaml(idp.config())
    principal = decide(gate, bearer(idp.token(alg)), method="GET", path="/v1/models")
    assert isinstance(principal, Principal)
    assert principal.principal == "alice"
    assert principal.attributes == {"scopes": ["read", "write"], "teams": ["eng"]}
    assert principal.tenant is None
    assert principal.unknown_attributes == frozenset()
    assert principal == Principal("alice", {"scopes": ["read", "write"], "teams": ["eng"]})


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_forged_token_is_refused(idp: IdentityProvider, alg: str) -> None:
    gate = Gate.from_yaml(idp.config())
    with pytest.raises(AuthError) as refused:
        decide(gate, bearer(idp.forged(alg)))
    error = refused.value
    assert (error.status, error.code, error.reason) == (401, "invalid_token", "signature")
    assert error.www_authenticate.startswith('Bearer realm="tokengate", error="invalid_token"')
    assert json.loads(error.body) == {"error": {"code": "invalid_token", "message": error.message}}
    assert ("cache-control", "no-store") in error.headers


def test_expired_and_wrong_audience_are_refused_with_their_reason(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    expired = idp.token(exp=int(time.time()) - 60, iat=int(time.time()) - 400)
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync(bearer(expired))
    assert (refused.value.status, refused.value.reason) == (401, "claim exp")
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync(bearer(idp.token(aud="another-api")))
    assert (refused.value.status, refused.value.reason) == (401, "claim aud")
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync(bearer(idp.token(iss="https://evil.test")))
    assert refused.value.reason == "claim iss"


def test_no_credential_is_a_401_without_an_error_attribute(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync({})
    assert refused.value.status == 401
    assert refused.value.reason == "missing_credential"
    assert refused.value.www_authenticate == 'Bearer realm="tokengate"'


def test_key_rotation_fetches_the_new_key(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    assert gate.authenticate_sync(bearer(idp.token("ES256"))).principal == "alice"
    old_kid = idp.kid("ES256")
    new_kid = idp.rotate("ES256")
    time.sleep(0.05)  # past refresh_cooldown
    assert gate.authenticate_sync(bearer(idp.token("ES256", kid=new_kid))).principal == "alice"
    # The old key left the published set; the key set now in hand no longer has it.
    with pytest.raises(AuthError):
        time.sleep(0.05)
        gate.authenticate_sync(bearer(idp.token("ES256", kid=old_kid)))


def test_identity_provider_down_is_a_503_with_retry_after(idp: IdentityProvider) -> None:
    idp.down = True
    gate = Gate.from_yaml(idp.config())
    with pytest.raises(AuthError) as refused:
        decide(gate, bearer(idp.token()))
    error = refused.value
    assert (error.status, error.code) == (503, "temporarily_unavailable")
    assert error.retry_after is not None and error.retry_after >= 1
    assert error.www_authenticate is None
    assert "127.0.0.1" not in error.message, "a 503's body names no internal service"


def test_route_policy_refusal_is_a_403(idp: IdentityProvider) -> None:
    policy = (
        "route_policy:\n  default: forbid\n  rules:\n"
        "    - path: /admin*\n      forbid: {attribute: teams, none_of: [ops]}\n"
        "    - path: '*'\n      permit: all\n"
    )
    gate = Gate.from_yaml(idp.config(policy))
    with pytest.raises(AuthError) as refused:
        decide(gate, bearer(idp.token()), method="GET", path="/admin/users")
    assert (refused.value.status, refused.value.code, refused.value.reason) == (403, "insufficient_scope", "policy")
    assert "Authenticated as alice" in refused.value.message
    ops = idp.token(groups=["ops"])
    assert decide(gate, bearer(ops), path="/admin/users").principal == "alice"


def test_an_open_path_lets_in_without_a_principal(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    assert gate.authenticate_sync({}, path="/healthz") is None
    assert gate.authenticate_sync(bearer(idp.forged()), path="/healthz") is None
    assert gate.authenticate_sync(bearer(idp.token()), path="/healthz").principal == "alice"
    assert gate.is_open("/healthz") and not gate.is_open("/healthz/x")


def test_paths_with_two_readings_are_refused_before_any_provider(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    for path in ("/healthz/../admin", "/public/%2e%2e/admin", "/a%2fb", "/x#/y"):
        with pytest.raises(AuthError) as refused:
            gate.authenticate_sync(bearer(idp.token()), path=path)
        assert (refused.value.status, refused.value.reason) == (400, "request"), path
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync({**bearer(idp.token()), "x-http-method-override": "DELETE"})
    assert refused.value.status == 400


def test_headers_in_every_shape_and_every_copy(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    token = idp.token()
    assert gate.authenticate_sync([(b"authorization", f"Bearer {token}".encode())]).principal == "alice"
    assert gate.authenticate_sync([("Authorization", f"Bearer {token}")]).principal == "alice"
    # Two Authorization headers are two credentials: ambiguous, refused.
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync([("authorization", f"Bearer {token}"), ("authorization", "Bearer other")])
    assert refused.value.status in (400, 401)
    with pytest.raises(AuthError) as refused:
        gate.authenticate_sync([("authorization", "Bearer x\nInjected: 1")])
    assert refused.value.status == 400
    with pytest.raises(TypeError):
        gate.authenticate_sync([("authorization",)])
    with pytest.raises(ValueError):
        gate.authenticate_sync({}, client_ip="not-an-ip")
    # A dict (read directly), a tuple of pairs, bytes values, Starlette's Headers (its raw list).
    from starlette.datastructures import Headers

    assert gate.authenticate_sync({"authorization": f"Bearer {token}".encode()}).principal == "alice"
    assert gate.authenticate_sync(((b"authorization", f"Bearer {token}".encode()),)).principal == "alice"
    raw = Headers(raw=[(b"authorization", f"Bearer {token}".encode()), (b"x-a", b"1"), (b"x-a", b"2")])
    assert gate.authenticate_sync(raw).principal == "alice"
    # Latin-1 text is read as its bytes; text beyond Latin-1 has no HTTP reading: refused, in any shape.
    for headers in ({"authorization": f"Bearer {token}", "x-name": "caf\u00e9"},):
        assert gate.authenticate_sync(headers).principal == "alice"
    for headers in ({"authorization": f"Bearer {token}", "x-name": "\u2603"}, [("x-\u2603", "1")]):
        with pytest.raises(AuthError) as refused:
            gate.authenticate_sync(headers)
        assert refused.value.status == 400
    with pytest.raises(TypeError):
        gate.authenticate_sync({"authorization": 1})
    with pytest.raises(TypeError):
        gate.authenticate_sync({b"authorization"[0]: "x"})


def test_the_event_loop_keeps_running_while_a_key_fetch_stalls(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    idp.stall.clear()  # the JWKS server holds every fetch until released

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        deciding = asyncio.ensure_future(gate.authenticate(bearer(idp.token())))
        await asyncio.sleep(0.5)
        assert not deciding.done(), "the key fetch was to stall"
        ticks_while_stalled = ticks
        idp.stall.set()
        principal = await deciding
        ticking.cancel()
        assert principal.principal == "alice"
        return ticks_while_stalled

    # 0.5 s of 10 ms ticks: a blocked loop would count none.
    assert asyncio.run(main()) >= 20


def test_a_decision_without_waiting_is_a_future_already_done(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    gate.authenticate_sync(bearer(idp.token()))  # the key set is in hand from here on

    async def main() -> None:
        valid = gate.authenticate(bearer(idp.token()))
        assert isinstance(valid, asyncio.Future) and valid.done(), "decided on the calling thread"
        assert (await valid).principal == "alice"
        assert valid.result().principal == "alice", "a Future can be awaited and read again"
        forged = gate.authenticate(bearer(idp.forged()))
        assert forged.done()
        with pytest.raises(AuthError) as refused:
            await forged
        assert refused.value.status == 401
        # Done futures and pending ones, side by side, through the usual combinators.
        together = await asyncio.gather(
            gate.authenticate(bearer(idp.token("ES256"))),
            gate.authenticate(bearer(idp.token("EdDSA"))),
            gate.authenticate(bearer(idp.forged("ES256"))),
            return_exceptions=True,
        )
        assert [type(x) for x in together] == [Principal, Principal, AuthError]
        assert (await asyncio.wait_for(gate.authenticate(bearer(idp.token())), timeout=5)).principal == "alice"
        done, _ = await asyncio.wait([asyncio.ensure_future(gate.authenticate(bearer(idp.token())))])
        assert done.pop().result().principal == "alice"

    asyncio.run(main())


def test_a_decision_that_waits_goes_on_where_the_first_poll_left_it(idp: IdentityProvider) -> None:
    """The first poll, on the calling thread, starts the key fetch; the runtime finishes that fetch."""
    gate = Gate.from_yaml(idp.config())
    idp.stall.clear()

    async def main() -> None:
        waiting = gate.authenticate(bearer(idp.token()))
        assert not waiting.done(), "a key fetch cannot be decided on the calling thread"
        await asyncio.sleep(0.2)
        assert idp.fetches == 1
        idp.stall.set()
        assert (await asyncio.wait_for(waiting, timeout=10)).principal == "alice"

    try:
        asyncio.run(main())
    finally:
        idp.stall.set()
    assert idp.fetches == 1, "the same fetch, not one restarted on the runtime"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_gate_built_before_a_fork_is_refused_in_the_child(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    assert gate.authenticate_sync(bearer(idp.token())).principal == "alice"
    token = idp.token()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the worker of a pre-fork server: its runtime's threads stayed in the parent
        outcomes = []
        for attempt in (
            lambda: gate.authenticate_sync(bearer(token)),
            lambda: asyncio.run(_awaited(gate.authenticate(bearer(token)))),
            lambda: Gate.from_yaml(idp.config()),
        ):
            try:
                attempt()
                outcomes.append("ran")
            except RuntimeError as refused:
                outcomes.append("refused" if "fork" in str(refused) else f"other: {refused}")
            except BaseException as other:  # noqa: BLE001 - reported to the parent, which asserts
                outcomes.append(f"other: {other!r}")
        os.write(write, json.dumps(outcomes).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        outcomes = json.loads(answer.read())
    os.waitpid(child, 0)
    assert outcomes == ["refused", "refused", "refused"]
    assert gate.authenticate_sync(bearer(idp.token())).principal == "alice", "the parent's gate still works"


async def _awaited(awaitable):
    return await awaitable


def test_authenticate_sync_releases_the_gil_while_it_waits(idp: IdentityProvider) -> None:
    gate = Gate.from_yaml(idp.config())
    idp.stall.clear()
    counted = []
    stop = threading.Event()

    def counter() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            time.sleep(0.001)
        counted.append(n)

    thread = threading.Thread(target=counter)
    thread.start()
    releaser = threading.Timer(0.5, idp.stall.set)
    releaser.start()
    assert gate.authenticate_sync(bearer(idp.token())).principal == "alice"
    stop.set()
    thread.join()
    assert counted[0] >= 50, "another Python thread ran while authenticate_sync waited"


def test_configs_load_from_text_dict_and_file(idp: IdentityProvider, tmp_path) -> None:
    as_dict = {
        "provider_config": {
            "type": "oauth2_token", "issuer": ISSUER, "audience": AUDIENCE, "jwks": {"uri": idp.jwks_uri},
        },
        "realm": "api",
    }
    gate = Gate.from_dict(as_dict)
    assert gate.realm == "api"
    assert gate.authenticate_sync(bearer(idp.token("EdDSA"))).principal == "alice"
    path = tmp_path / "tokengate.json"
    path.write_text(json.dumps(as_dict))
    assert Gate.from_file(str(path)).authenticate_sync(bearer(idp.token())).principal == "alice"
    # A Llama Stack / OGX run.yaml: its server.auth is the config.
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        "version: 2\nimage_name: demo\napis: [inference]\nproviders:\n  inference: []\nserver:\n  port: 8321\n"
        "  auth:\n    provider_config:\n      type: oauth2_token\n"
        f"      issuer: {ISSUER}\n      audience: {AUDIENCE}\n      jwks:\n        uri: {idp.jwks_uri}\n"
    )
    ogx = Gate.from_file(run_yaml)
    assert ogx.authenticate_sync(bearer(idp.token()), path="/v1/models").principal == "alice"
    assert ogx.authenticate_sync({}, path="/v1/health") is None, "OGX's public routes are open"


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as error:
        Gate.from_yaml("provider_config: {type: nope}")
    assert "provider_config.type" in str(error.value)
    with pytest.raises(ConfigError):
        Gate.from_yaml("provider_config:\n  type: oauth2_token\n  jwks: {uri: 'http://127.0.0.1:1/k'}\n")
    with pytest.raises(ConfigError):
        Gate.from_file("/nonexistent/tokengate.yaml")
    with pytest.raises(TypeError):
        Gate.from_dict({"provider_config": {"type": "oauth2_token", "audience": {1, 2}}})
