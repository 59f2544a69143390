"""Distinct tokens per second: `await gate.authenticate` against PyJWT + PyJWKClient, authlib
and Llama Stack's (OGX's) `OAuth2TokenAuthProvider` on the same corpus, for RS256, ES256 and
EdDSA (issue #23 part 4).

    pip install tokengate pyjwt[crypto] cryptography authlib [llama-stack]
    taskset -c 1 python bindings/python/bench/bench.py [--tokens 2000]

Every library verifies the same signed tokens (distinct: a fresh `jti` each, so no verified-token
cache helps) against the same key set, served by a local JWKS server and fetched once before
timing; each checks signature, exp, iss and aud. One process, one core when run under taskset:
tokengate's runtime threads share it with Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from typing import Any, Callable, List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import jwt  # noqa: E402
from conftest import ALGORITHMS, AUDIENCE, ISSUER, IdentityProvider, bearer  # noqa: E402

import tokengate  # noqa: E402


def corpus(idp: IdentityProvider, alg: str, n: int) -> List[str]:
    return [idp.token(alg, jti=uuid.uuid4().hex, exp=int(time.time()) + 3600) for _ in range(n)]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_tokengate(idp: IdentityProvider, tokens: List[str], concurrency: int) -> float:
    gate = tokengate.Gate.from_yaml(idp.config())
    gate.authenticate_sync(bearer(tokens[0]))  # the key set is fetched before timing

    async def main() -> float:
        started = time.perf_counter()
        for i in range(0, len(tokens), concurrency):
            batch = tokens[i : i + concurrency]
            await asyncio.gather(*(gate.authenticate(bearer(t), path="/v1/models") for t in batch))
        return time.perf_counter() - started

    return rate(len(tokens), asyncio.run(main()))


def bench_tokengate_sync(idp: IdentityProvider, tokens: List[str]) -> float:
    gate = tokengate.Gate.from_yaml(idp.config())
    gate.authenticate_sync(bearer(tokens[0]))
    started = time.perf_counter()
    for t in tokens:
        gate.authenticate_sync(bearer(t), path="/v1/models")
    return rate(len(tokens), time.perf_counter() - started)


def bench_tokengate_repeated(idp: IdentityProvider, token: str, n: int) -> float:
    gate = tokengate.Gate.from_yaml(idp.config())
    gate.authenticate_sync(bearer(token))

    async def main() -> float:
        started = time.perf_counter()
        for _ in range(n):
            await gate.authenticate(bearer(token), path="/v1/models")
        return time.perf_counter() - started

    return rate(n, asyncio.run(main()))


def bench_pyjwt(idp: IdentityProvider, tokens: List[str], alg: str) -> float:
    client = jwt.PyJWKClient(idp.jwks_uri, cache_keys=True)
    client.get_signing_key_from_jwt(tokens[0])
    started = time.perf_counter()
    for t in tokens:
        key = client.get_signing_key_from_jwt(t)
        jwt.decode(t, key.key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)
    return rate(len(tokens), time.perf_counter() - started)


def bench_pyjwt_key_in_hand(idp: IdentityProvider, token: str, alg: str, n: int) -> float:
    key = jwt.PyJWKClient(idp.jwks_uri).get_signing_key_from_jwt(token).key
    started = time.perf_counter()
    for _ in range(n):
        jwt.decode(token, key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)
    return rate(n, time.perf_counter() - started)


def bench_authlib(idp: IdentityProvider, tokens: List[str]) -> float:
    import urllib.request

    from authlib.jose import JsonWebKey, JsonWebToken

    with urllib.request.urlopen(idp.jwks_uri) as response:
        key_set = JsonWebKey.import_key_set(json.load(response))
    decoder = JsonWebToken(list(ALGORITHMS))
    options = {"iss": {"essential": True, "value": ISSUER}, "aud": {"essential": True, "value": AUDIENCE}}
    started = time.perf_counter()
    for t in tokens:
        claims = decoder.decode(t, key_set, claims_options=options)
        claims.validate()
    return rate(len(tokens), time.perf_counter() - started)


def llama_stack_provider(jwks_uri: str) -> Optional[Tuple[Any, str]]:
    """Llama Stack's / OGX's oauth2_token provider on ``jwks_uri``, and its package and version;
    ``None`` when neither is installed. The module moved between releases
    (``llama_stack.distribution`` in 0.2, ``llama_stack.core``, then ``ogx.core``), and so did the
    shape of ``AuthenticationConfig``."""
    import importlib
    from importlib import metadata

    settings = {"audience": AUDIENCE, "issuer": ISSUER, "verify_tls": False, "jwks": {"uri": jwks_uri}}
    for package, prefix in (("ogx", "ogx.core"), ("llama_stack", "llama_stack.core"),
                            ("llama_stack", "llama_stack.distribution")):
        try:
            providers = importlib.import_module(prefix + ".server.auth_providers")
            datatypes = importlib.import_module(prefix + ".datatypes")
        except ImportError:
            continue
        try:
            config = datatypes.AuthenticationConfig(provider_config={"type": "oauth2_token", **settings})
        except Exception:
            config = datatypes.AuthenticationConfig(provider_type="oauth2_token", config=settings)
        return providers.create_auth_provider(config), f"{package} {metadata.version(package)}"
    return None


def bench_llama_stack(provider: Any, tokens: List[str]) -> float:
    """``await provider.validate_token`` per token, one after the other: the provider does no I/O
    once its key set is in hand, so concurrent awaits would only add scheduling."""
    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": []}

    async def main() -> float:
        await provider.validate_token(tokens[0], scope)  # the key set is fetched before timing
        started = time.perf_counter()
        for t in tokens:
            await provider.validate_token(t, scope)
        return time.perf_counter() - started

    return rate(len(tokens), asyncio.run(main()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    idp = IdentityProvider()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"# {time.strftime('%Y-%m-%d')} {platform.processor() or platform.machine()} "
          f"Python {platform.python_version()} tokengate {tokengate.__version__}, cores usable: {affinity}")
    llama = llama_stack_provider(idp.jwks_uri)
    print(f"# {args.tokens} distinct tokens per algorithm; tokens/s (higher is better); "
          f"{llama[1] if llama else 'llama-stack / ogx not installed: its column is skipped'}")
    print("| algorithm | tokengate await (x{0}) | tokengate sync | PyJWT + PyJWKClient | authlib | Llama Stack "
          "| tokengate / PyJWT | tokengate / Llama Stack |".format(args.concurrency))
    print("|---|---|---|---|---|---|---|---|")
    try:
        for alg in ALGORITHMS:
            tokens = corpus(idp, alg, args.tokens)
            ours = bench_tokengate(idp, tokens, args.concurrency)
            ours_sync = bench_tokengate_sync(idp, tokens)
            pyjwt = bench_pyjwt(idp, tokens, alg)
            try:
                authlib = f"{bench_authlib(idp, tokens):,.0f}"
            except ImportError:
                authlib = "(not installed)"
            llama_rate, versus_llama = "(not installed)", "-"
            if llama:
                try:
                    measured = bench_llama_stack(llama[0], tokens)
                    llama_rate, versus_llama = f"{measured:,.0f}", f"{ours / measured:.1f}x"
                except Exception as error:  # e.g. python-jose (llama-stack 0.2) has no EdDSA
                    llama_rate = f"(refused: {type(error).__name__}: {error.__cause__ or error})"
            print(f"| {alg} | {ours:,.0f} | {ours_sync:,.0f} | {pyjwt:,.0f} | {authlib} | {llama_rate} "
                  f"| {ours / pyjwt:.1f}x | {versus_llama} |")
        token = idp.token("ES256")
        print(f"\nrepeated ES256 token (cache hit), await gate.authenticate: {bench_tokengate_repeated(idp, token, 20000):,.0f}/s; "
              f"bare jwt.decode with the key in hand: {bench_pyjwt_key_in_hand(idp, token, 'ES256', 5000):,.0f}/s")
    finally:
        idp.close()


if __name__ == "__main__":
    main()
