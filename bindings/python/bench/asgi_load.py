"""A FastAPI app under load, one uvicorn worker: tokengate's ASGI middleware against the same app
behind Llama Stack's (OGX's) `AuthenticationMiddleware` with its oauth2_token JWKS provider
(issue #23 part 4). Requests per second with distinct tokens.

    pip install tokengate fastapi uvicorn pyjwt[crypto] cryptography pytest llama-stack
    python bindings/python/bench/asgi_load.py [--rounds 3] [--duration 8] [--tokens 50000]

The driver serves a JWKS on 127.0.0.1, signs the corpus (every token its own `jti`), then, round
after round, alternating, starts a fresh `uvicorn` process pinned with `taskset -c 1` for each
app and loads it with `wrk` pinned to core 0, every request carrying the next token of the file
(scripts/loadtest_tokens.lua). A fresh server per run: no run sees a token another run cached.
Before each run a valid token must get 200 and a forged one 401; a run with any non-2xx answer
is an error. "none" is the same app without authentication, the ceiling. Medians per app.

    python asgi_load.py serve APP PORT CONFIG   # what the driver runs under taskset
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from multiprocessing import get_context
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
LUA = os.path.join(ROOT, "scripts", "loadtest_tokens.lua")
PATH = "/v1/models"
APPS = ("tokengate", "llama_stack", "none")


def build_app(kind: str, config: Dict[str, str]):  # type: ignore[no-untyped-def]
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(PATH)
    async def models() -> Dict[str, object]:
        return {"object": "list", "data": [{"id": "llama", "object": "model"}]}

    if kind == "tokengate":
        import tokengate
        from tokengate.asgi import TokengateMiddleware

        app.add_middleware(TokengateMiddleware, gate=tokengate.Gate.from_yaml(config["gate_yaml"]))
    elif kind == "llama_stack":
        middleware, auth_config = llama_stack_middleware(config)
        app.add_middleware(middleware, auth_config=auth_config)
    elif kind != "none":
        raise SystemExit(f"unknown app {kind!r}")
    return app


def llama_stack_middleware(config: Dict[str, str]):  # type: ignore[no-untyped-def]
    """Llama Stack 0.2's middleware and its oauth2_token config for the same JWKS, issuer and
    audience. (Later releases, `llama_stack.core` and OGX, also need the stack's route table.)"""
    from llama_stack.distribution.datatypes import AuthenticationConfig
    from llama_stack.distribution.server.auth import AuthenticationMiddleware

    settings = {"audience": config["audience"], "issuer": config["issuer"], "verify_tls": False,
                "jwks": {"uri": config["jwks_uri"]}}
    return AuthenticationMiddleware, AuthenticationConfig(provider_type="oauth2_token", config=settings)


def serve(kind: str, port: int, config_path: str) -> None:
    import uvicorn

    with open(config_path) as f:
        config = json.load(f)
    uvicorn.run(build_app(kind, config), host="127.0.0.1", port=port, workers=1, log_level="error",
                access_log=False, lifespan="off")


# The corpus is signed in worker processes forked from the driver, which holds the keys.
_IDP = None


def _sign(count: int) -> List[str]:
    assert _IDP is not None
    return [_IDP.token("RS256", jti=uuid.uuid4().hex, exp=int(time.time()) + 7200) for _ in range(count)]


def sign_corpus(idp, n: int) -> List[str]:  # type: ignore[no-untyped-def]
    global _IDP
    _IDP = idp
    chunks = [n // 8] * 8
    chunks[-1] += n - sum(chunks)
    with get_context("fork").Pool(2) as pool:
        return [t for part in pool.map(_sign, chunks) for t in part]


def status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_ready(url: str, process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            status(url, "x")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def run(kind: str, config_path: str, tokens_path: str, valid: str, forged: str, args: argparse.Namespace,
        port: int) -> Dict[str, float]:
    url = f"http://127.0.0.1:{port}{PATH}"
    # The server's output goes to a file: Llama Stack logs every refused token, whole, with its
    # traceback (the forged-token check below); it is shown only if the run fails.
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(["taskset", "-c", args.server_core, sys.executable, os.path.abspath(__file__),
                               "serve", kind, str(port), config_path], stdout=log, stderr=log)
    try:
        wait_ready(url, server)
        if status(url, valid) != 200:
            raise RuntimeError(f"{kind}: a valid token was not let in")
        if kind != "none" and status(url, forged) != 401:
            raise RuntimeError(f"{kind}: a forged token was not refused with 401")
        out = subprocess.run(["taskset", "-c", args.wrk_core, "wrk", "-t1", f"-c{args.connections}",
                              f"-d{args.duration}s", "--latency", "-s", LUA, url, "--", tokens_path],
                             check=True, capture_output=True, text=True).stdout
    except Exception:
        log.seek(0)
        sys.stderr.write(log.read()[-4000:])
        raise
    finally:
        server.terminate()
        server.wait(10)
        log.close()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"{kind}: errors under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    return {"rps": rps, "requests": total, "p99": p99.group(1) if p99 else "?"}  # type: ignore[dict-item]


def drive(args: argparse.Namespace) -> None:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from conftest import AUDIENCE, ISSUER, IdentityProvider, free_port

    idp = IdentityProvider()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            tokens = sign_corpus(idp, args.tokens)
            tokens_path = os.path.join(scratch, "tokens.txt")
            with open(tokens_path, "w") as f:
                f.write("\n".join(tokens) + "\n")
            config_path = os.path.join(scratch, "config.json")
            with open(config_path, "w") as f:
                json.dump({"gate_yaml": idp.config(), "jwks_uri": idp.jwks_uri, "issuer": ISSUER,
                           "audience": AUDIENCE}, f)
            valid, forged = idp.token("RS256"), idp.forged("RS256")
            results: Dict[str, List[Dict[str, float]]] = {kind: [] for kind in args.apps}
            for round_number in range(1, args.rounds + 1):
                for kind in args.apps:
                    measured = run(kind, config_path, tokens_path, valid, forged, args, free_port())
                    results[kind].append(measured)
                    wrapped = " (corpus wrapped: tokens repeated)" if measured["requests"] > args.tokens else ""
                    print(f"round {round_number} {kind}: {measured['rps']:,.0f} req/s, "
                          f"{measured['requests']:,} requests, p99 {measured['p99']}{wrapped}", flush=True)
            medians = {kind: statistics.median(r["rps"] for r in runs) for kind, runs in results.items()}
            print("\n| app | req/s, median of {0} | runs |".format(args.rounds))
            print("|---|---|---|")
            for kind, runs in results.items():
                print(f"| {kind} | {medians[kind]:,.0f} | {' / '.join(format(r['rps'], ',.0f') for r in runs)} |")
            if "tokengate" in medians and "llama_stack" in medians:
                print(f"\ntokengate / llama_stack: {medians['tokengate'] / medians['llama_stack']:.2f}x")
    finally:
        idp.close()


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        serve(argv[1], int(argv[2]), argv[3])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=50000)
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=APPS)
    parser.add_argument("--server-core", default="1")
    parser.add_argument("--wrk-core", default="0")
    drive(parser.parse_args(argv))


if __name__ == "__main__":
    main()
