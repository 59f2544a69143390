"""Distinct tokens per second: `await gate.authenticate` against PyJWT + PyJWKClient, authlib
and Llama Stack's (OGX's) `OAuth2TokenAuthProvider` on the same corpus, for RS256, ES256 and
EdDSA (issue #23 part 4).

    pip install tokengate pyjwt[crypto] cryptography authlib [llama-stack]
    taskset -c 1 python bindings/python/bench/bench.py [--tokens 2000]

Every library verifies the same signed tokens (distinct: a fresh `jti` each, so no verified-token
cache helps) against the same key set, served by a local JWKS server and fetched once before
timing; each checks signature, exp, iss and aud. One process, one core when run under taskset:
tokengate's runtime threads share it with Python.

Two more measures: "signature only" (base64 and `cryptography`'s signature check, the floor
under any Python validator), and the binding's own cost: `authenticate_sync` against the same
gate deciding from Rust (`Gate._admit_in_rust`), alternating rounds on disjoint distinct tokens.
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


def bench_signature_only(idp: IdentityProvider, tokens: List[str], alg: str) -> float:
    """Base64 and the signature check alone, with ``cryptography``'s key in hand (OpenSSL):
    no JSON, no claims. No validator in Python can be faster than this per token; it says how
    far above the signature each library's own work is."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    public = idp.keys[idp.kid(alg)][1].public_key()

    def b64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    started = time.perf_counter()
    for t in tokens:
        signing_input, _, signature = t.rpartition(".")
        raw = b64(signature)
        message = signing_input.encode()
        if alg == "RS256":
            public.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256":
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            public.verify(der, message, ec.ECDSA(hashes.SHA256()))
        else:
            public.verify(raw, message)
    return rate(len(tokens), time.perf_counter() - started)


def paired_binding_overhead(idp: IdentityProvider, tokens: List[str], rounds: int) -> Tuple[float, float, float]:
    """``authenticate_sync`` from Python against the same gate's decisions made from Rust
    (``Gate._admit_in_rust``, no Python between them), on disjoint slices of distinct tokens,
    alternating which goes first; the median per-round ratio of Python's cost to Rust's and
    the two median costs in µs per decision."""
    gate = tokengate.Gate.from_yaml(idp.config())
    gate.authenticate_sync(bearer(tokens[0]))
    pool = tokens[1:]
    size = len(pool) // (2 * rounds)
    ratios, python_us, rust_us = [], [], []
    for r in range(rounds):
        first, second = pool[2 * r * size : (2 * r + 1) * size], pool[(2 * r + 1) * size : (2 * r + 2) * size]
        sides = {}
        for side, batch in (("python", first), ("rust", second)) if r % 2 == 0 else (("rust", first), ("python", second)):
            if side == "python":
                started = time.perf_counter()
                for t in batch:
                    gate.authenticate_sync(bearer(t), path="/v1/models")
                sides[side] = (time.perf_counter() - started) / len(batch)
            else:
                seconds, admitted = gate._admit_in_rust(batch, path="/v1/models")
                assert admitted == len(batch), f"Rust admitted {admitted} of {len(batch)}"
                sides[side] = seconds / len(batch)
        ratios.append(sides["python"] / sides["rust"])
        python_us.append(sides["python"] * 1e6)
        rust_us.append(sides["rust"] * 1e6)

    def median(values: List[float]) -> float:
        return sorted(values)[len(values) // 2]

    return median(ratios), median(python_us), median(rust_us)


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
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the paired binding-overhead measure")
    args = parser.parse_args()
    idp = IdentityProvider()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"# {time.strftime('%Y-%m-%d')} {platform.processor() or platform.machine()} "
          f"Python {platform.python_version()} tokengate {tokengate.__version__}, cores usable: {affinity}")
    llama = llama_stack_provider(idp.jwks_uri)
    print(f"# {args.tokens} distinct tokens per algorithm; tokens/s (higher is better); "
          f"{llama[1] if llama else 'llama-stack / ogx not installed: its column is skipped'}")
    print("| algorithm | tokengate await (x{0}) | tokengate sync | PyJWT + PyJWKClient | authlib | Llama Stack "
          "| signature only | tokengate / PyJWT | tokengate / Llama Stack |".format(args.concurrency))
    print("|---|---|---|---|---|---|---|---|---|")
    overheads = []
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
            floor = bench_signature_only(idp, tokens, alg)
            print(f"| {alg} | {ours:,.0f} | {ours_sync:,.0f} | {pyjwt:,.0f} | {authlib} | {llama_rate} "
                  f"| {floor:,.0f} | {ours / pyjwt:.1f}x | {versus_llama} |")
            overheads.append((alg, paired_binding_overhead(idp, corpus(idp, alg, args.tokens), args.rounds)))
        print(f"\nthe binding's cost over the same decisions made from Rust ({args.rounds} alternating rounds, "
              "disjoint distinct tokens, median):")
        for alg, (ratio, python_us, rust_us) in overheads:
            print(f"  {alg}: authenticate_sync {python_us:.1f} µs, from Rust {rust_us:.1f} µs per decision: {ratio:.2f}x")
        token = idp.token("ES256")
        print(f"\nrepeated ES256 token (cache hit), await gate.authenticate: {bench_tokengate_repeated(idp, token, 20000):,.0f}/s; "
              f"bare jwt.decode with the key in hand: {bench_pyjwt_key_in_hand(idp, token, 'ES256', 5000):,.0f}/s")
    finally:
        idp.close()


if __name__ == "__main__":
    main()
