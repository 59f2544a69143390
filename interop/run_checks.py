#!/usr/bin/env python3
"""tokengate interop checks: the real `tokengate` binary against software nobody here wrote.

Starts panva's oidc-provider (interop/oidc-server.mjs), `tokengate serve`
instances, nginx with config/nginx-auth-request.conf and a header-echoing
upstream, all on free 127.0.0.1 ports, then checks:

  1. oauth2_token by OIDC discovery and by explicit jwks.uri: RS256, ES256 and
     EdDSA tokens accepted with the principal and mapped attributes as issued;
     forged, expired, mis-addressed and garbage tokens rejected.
  2. RFC 7662 introspection with client_secret_basic and client_secret_post:
     active opaque token accepted; revoked and garbage tokens rejected.
  3. Key rotation seen by a running `tokengate serve`; with the provider
     stopped, known keys keep working and an unknown kid is 503.
  4. `tokengate serve` behind nginx auth_request: allowed, denied, unavailable;
     forged X-Auth-* headers in every spelling never reach the application
     (tokengate refuses those nginx passes it; nginx drops the `_` ones).
  5. The same behind Caddy forward_auth (the README's recipe, which removes
     them before tokengate sees them; without it, tokengate refuses them).

Prints one PASS/FAIL line per check and a closing "N passed, N failed" line;
exits 1 if anything failed. Python 3 standard library only.

Usage: run_checks.py --tokengate BIN --root TMPDIR [--repo DIR] [--only 1,2,3,4,5]
(scripts/interop.sh sets everything up and calls this.)
"""

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "https://api.tokengate.test"
OTHER = "https://other.tokengate.test"
OPAQUE = "https://opaque.tokengate.test"
CLAIMS_MAPPING = {"groups": "teams", "realm_access.roles": "roles", "scope": "scopes"}
# oidc-provider signs with Node's crypto (OpenSSL), which does not normalize
# ECDSA S: about half its ES256 tokens are high-S. tokengate accepts both forms by
# default (issue #21), so the suite runs on the defaults; check 1.6 holds it to that.
NODE_SIGNS_HIGH_S = {}
# The order of the P-256 group: a signature's S above half of it is "high-S".
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# What each service client asks for (scopes differ so that each token is distinct).
REQUESTED_SCOPE = {"svc-rs256": "read write", "svc-es256": "read", "svc-eddsa": "read write admin"}
ALG_CLIENT = {"RS256": "svc-rs256", "ES256": "svc-es256", "EdDSA": "svc-eddsa"}
COOLDOWN = 1.0  # jwks.refresh_cooldown given to `tokengate serve`

# Checks that fail because of a tokengate bug already reported: shown as XFAIL
# and not counted as failures (INTEROP_STRICT=1 counts them). When one passes,
# it says so: take it out of this list.
KNOWN_ISSUES: dict = {}
STRICT = os.environ.get("INTEROP_STRICT") == "1"

# Requests to 127.0.0.1 only, never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CHILD_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
CHILD_ENV["NO_PROXY"] = CHILD_ENV["no_proxy"] = "127.0.0.1,localhost"


# ----------------------------------------------------------------- helpers


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token):
    head, payload, _sig = token.split(".")
    return json.loads(b64url_decode(head)), json.loads(b64url_decode(payload))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive get)
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self):
        hdrs = {k: v for k, v in self.headers.items()} if self.headers else {}
        return f"HTTP {self.status} headers={hdrs} body={self.body[:300]!r}"


def http(method, url, headers=None, data=None, timeout=15):
    if isinstance(data, dict):
        data = urllib.parse.urlencode(data).encode()
    elif isinstance(data, str):
        data = data.encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read().decode("utf-8", "replace"))


def raw_request(base, method, target, headers=None, timeout=15):
    """One HTTP/1.1 request with the request target sent byte for byte (no
    client-side normalization or encoding); returns (status, headers, body).
    `headers` is a dict or a list of (name, value) pairs (to repeat a name)."""
    host, port = base.split("//", 1)[1].split(":")
    lines = [method.encode() + b" " + (target if isinstance(target, bytes) else target.encode()) + b" HTTP/1.1",
             f"Host: {host}".encode(), b"Connection: close"]
    for name, value in (headers.items() if isinstance(headers, dict) else headers or ()):
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    got = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        got[k.strip().lower()] = v.strip()
    return status, got, body.decode("utf-8", "replace")


def through_proxy(base, method, target, headers, want, token=None, principal=None):
    """A check: `method target` (sent byte for byte) through the proxy at `base`
    answers `want`, reaching the upstream only for a 200 (and then with
    X-Auth-Principal `principal`, when given)."""
    def run():
        before = len(EchoHandler.seen)
        h = dict(headers)
        if token:
            h["Authorization"] = f"Bearer {token}"
        status, _, body = raw_request(base, method, target, h)
        reached_app = len(EchoHandler.seen) != before
        ok = status == want and reached_app == (want == 200)
        if principal is not None and reached_app:
            ok = ok and EchoHandler.seen[-1].get("headers", {}).get("x-auth-principal") == principal
        return ok, f"want {want} (upstream reached only for 200); got {status}, upstream reached: {reached_app}, " \
                   f"body {body[:200]!r}"
    return run


# Every header tokengate's answer may carry whose name a recipe copies or
# clears (src/http/server/identity.rs).
IDENTITY_HEADERS = ["X-Auth-Principal", "X-Auth-Tenant", "X-Auth-Attributes", "X-Auth-Unknown-Attributes",
                    "X-Auth-Attr-Roles", "X-Auth-Attr-Teams", "X-Auth-Attr-Scopes"]


def folded(name):
    """A header name as CGI-style back ends (PHP-FPM, CGI, WSGI) read it: case
    and `_` versus `-` do not count."""
    return name.lower().replace("_", "-")


def spellings(name):
    """`name` with each `-` as `-` or `_`: every name that folds to it."""
    parts = name.split("-")
    for seps in itertools.product("-_", repeat=len(parts) - 1):
        yield parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:]))


def forged_identity(names=IDENTITY_HEADERS):
    """What a client may send to pass for tokengate: every spelling of every
    name in three cases, a second copy of the exact name, and an empty copy
    (an empty X-Auth-Unknown-Attributes claims "every attribute is known")."""
    forged = []
    cases = (str, str.lower, str.upper)
    for name in names:
        for i, spelling in enumerate(spellings(name)):
            forged.append((cases[i % 3](spelling), f"forged-{len(forged)}"))
        forged.append((name.upper(), "admin"))
        forged.append((name.lower().replace("-", "_"), ""))
    return forged


def underscored(forged):
    """The entries of `forged` whose name has a `_`: what nginx drops by default."""
    return [(name, value) for name, value in forged if "_" in name]


def dotted(names):
    """Each of `names` with its `-` as `.`, and with only the first one so:
    PHP reads `.` in a variable name as `_`, so `X.Auth.Principal` is
    `HTTP_X_AUTH_PRINCIPAL` to it. nginx drops such names by default; Go
    (Caddy) passes them."""
    forged = []
    for name in names:
        forged.append((name.replace("-", "."), f"forged-dot-{len(forged)}"))
        forged.append((name.lower().replace("-", ".", 1), f"forged-dot-{len(forged)}"))
    return forged


def identity_seen(record):
    """What the application got under any name that folds to an X-Auth-*
    header: {folded name: [every value, in order]}."""
    seen = {}
    for name, value in record.get("raw_headers", []):
        if folded(name).startswith("x-auth-"):
            seen.setdefault(folded(name), []).append(value)
    return seen


def basic(client_id, secret):
    raw = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def wait_for(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        time.sleep(interval)
    return None


# How long a service may take to start. Generous: on a busy 2-core CI machine oidc-provider
# has taken well over 30 s; a service that exits fails the wait at once, with its log.
START_TIMEOUT = float(os.environ.get("INTEROP_START_TIMEOUT", "240"))


class ServiceExited(Exception):
    """A service's process ended while it was awaited: waiting longer cannot help."""


def tail(path, lines=25):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no file)\n"


# ----------------------------------------------------------------- the upstream


class EchoHandler(BaseHTTPRequestHandler):
    """The application behind nginx: answers every request with what it received."""

    seen = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        record = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            # Every header line as received: repeated names and `_` spellings kept apart.
            "raw_headers": [[k, v] for k, v in self.headers.items()],
            "body": body,
        }
        EchoHandler.seen.append(record)
        out = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, fmt, *args):
        pass


GITHUB_LOGIN = "octo-cat"
GITHUB_TOKEN = "ghp_interopTeamsUnknown0123456789abcdef"


class FakeGitHubHandler(BaseHTTPRequestHandler):
    """GitHub's `GET /user` for any token: all `github_token` asks when
    `max_org_pages: 0` leaves the organizations (so `teams`) unknown."""

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/user":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        out = json.dumps({"login": GITHUB_LOGIN, "id": 4242}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *args):
        pass


# ----------------------------------------------------------------- the suite


class Suite:
    def __init__(self, args):
        self.args = args
        self.root = os.path.abspath(args.root)
        self.repo = os.path.abspath(args.repo)
        self.tokengate = os.path.abspath(args.tokengate)
        self.logs = os.path.join(self.root, "logs")
        self.configs = os.path.join(self.root, "configs")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.configs, exist_ok=True)
        self.procs = {}  # name -> Popen
        self.results = []  # (id, ok)
        self.xfailed = []  # ids of KNOWN_ISSUES that failed
        self.idp = None  # the provider's ready document
        self.upstream = None
        self.github = None  # FakeGitHubHandler's server, started on first use

    # -- bookkeeping

    def record(self, cid, name, ok, detail="", note=""):
        """One result line. `detail` is shown on failure, `note` (short) on success."""
        ok = bool(ok)
        known = cid in KNOWN_ISSUES and not STRICT
        if known and not ok:
            self.xfailed.append(cid)
            word = "XFAIL"
            detail = f"known tokengate issue: {KNOWN_ISSUES[cid]}\n{detail}"
        else:
            self.results.append((cid, ok))
            word = "PASS" if ok else "FAIL"
        line = f"{word}  {cid:<6} {name}"
        if ok and cid in KNOWN_ISSUES:
            note = "fixed: remove it from KNOWN_ISSUES in interop/run_checks.py"
        if ok and note:
            line += f"  [{note}]"
        if detail and not ok:
            line += "\n        " + str(detail).replace("\n", "\n        ")
        print(line, flush=True)
        return ok

    def expect(self, cid, name, fn):
        """Runs fn() -> (ok, detail[, note]); an exception is a failure with its message."""
        note = ""
        try:
            ok, detail, *rest = fn()
            note = rest[0] if rest else ""
        except Exception as e:  # noqa: BLE001 - report, go on with the other checks
            ok, detail = False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        return self.record(cid, name, ok, detail, note)

    # -- processes

    def start(self, name, argv, env=None, cwd=None):
        log = open(os.path.join(self.logs, f"{name}.log"), "ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**CHILD_ENV, **(env or {})}, cwd=cwd,
        )
        log.close()
        self.procs[name] = proc
        with open(os.path.join(self.root, "pids"), "a") as f:
            f.write(f"{proc.pid}\n")
        return proc

    def wait_started(self, name, predicate, what, log=None):
        """Waits up to START_TIMEOUT for `predicate`; raises at once, with the log's tail, when the
        process `name` has exited, and after the timeout with the same tail."""
        log = log or os.path.join(self.logs, f"{name}.log")
        proc = self.procs[name]
        deadline = time.monotonic() + START_TIMEOUT
        next_note = time.monotonic() + 10
        while True:
            try:
                if predicate():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if proc.poll() is not None:
                raise ServiceExited(f"{name} exited with {proc.returncode} before {what}:\n" + tail(log))
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{name}: no {what} within {START_TIMEOUT:.0f}s "
                                   f"(INTEROP_START_TIMEOUT):\n" + tail(log))
            if time.monotonic() >= next_note:
                print(f"# still waiting for {name} ({what})", flush=True)
                next_note += 10
            time.sleep(0.1)

    def stop(self, name, sig=signal.SIGTERM):
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop_all(self):
        for name in list(self.procs):
            try:
                self.stop(name)
            except Exception:  # noqa: BLE001
                pass
        for attr in ("upstream", "github"):
            server = getattr(self, attr)
            if server:
                setattr(self, attr, None)
                server.shutdown()
                server.server_close()

    # -- the provider

    def start_idp(self):
        ready = os.path.join(self.root, "oidc-ready.json")
        self.start(
            "oidc-provider",
            [self.args.node, os.path.join(self.repo, "interop", "oidc-server.mjs")],
            env={"OIDC_PORT": "0", "OIDC_ADMIN_PORT": "0", "OIDC_READY_FILE": ready},
            cwd=os.path.join(self.repo, "interop"),
        )
        self.wait_started("oidc-provider", lambda: os.path.exists(ready), "its ready file")
        with open(ready) as f:
            self.idp = json.load(f)
        disco = http("GET", self.idp["issuer"] + "/.well-known/openid-configuration").json()
        self.idp["discovery"] = disco
        print(f"# oidc-provider {self.idp['issuer']} (admin {self.idp['admin']})", flush=True)

    def admin(self, method, path, body=None):
        r = http(method, self.idp["admin"] + path, headers={"Content-Type": "application/json"},
                 data=json.dumps(body) if body is not None else None)
        if r.status != 200:
            raise RuntimeError(f"admin {method} {path}: {r!r}")
        return r.json()

    def secret(self, client_id):
        return self.idp["clients"][client_id]["secret"]

    def token(self, client_id, resource=API, scope=None):
        scope = scope or REQUESTED_SCOPE.get(client_id, "read")
        r = http("POST", self.idp["discovery"]["token_endpoint"],
                 headers={"Authorization": basic(client_id, self.secret(client_id))},
                 data={"grant_type": "client_credentials", "resource": resource, "scope": scope})
        if r.status != 200:
            raise RuntimeError(f"token request for {client_id} failed: {r!r}")
        return r.json()["access_token"]

    def revoke(self, client_id, token):
        r = http("POST", self.idp["discovery"]["revocation_endpoint"],
                 headers={"Authorization": basic(client_id, self.secret(client_id))},
                 data={"token": token, "token_type_hint": "access_token"})
        if r.status != 200:
            raise RuntimeError(f"revocation failed: {r!r}")

    def forge(self, **spec):
        return self.admin("POST", "/forge", spec)["token"]

    def expected_attributes(self, client_id, scope=None):
        c = self.idp["clients"][client_id]
        return {"teams": c["groups"], "roles": c["roles"],
                "scopes": (scope or REQUESTED_SCOPE[client_id]).split()}

    # -- tokengate

    def write_config(self, name, provider_config, extra=None):
        path = os.path.join(self.configs, name)
        doc = {"provider_config": {"type": "oauth2_token", **provider_config}, **(extra or {})}
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        return path

    def write_chain_config(self, name, oauth2_config, extra):
        """The provider's JWTs (oauth2_token) and, through a fake GitHub,
        `GITHUB_TOKEN`, whose principal has `teams` unknown: every answer
        tokengate can give, in one `tokengate serve`."""
        if not self.github:
            self.github = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHubHandler)
            threading.Thread(target=self.github.serve_forever, daemon=True).start()
        path = os.path.join(self.configs, name)
        doc = {"providers": [
            {"type": "oauth2_token", **oauth2_config},
            {"type": "github_token", "github_api_base_url": f"http://127.0.0.1:{self.github.server_address[1]}",
             "max_org_pages": 0},
        ], **extra}
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        return path

    def tokengate_answer(self, tg_port, proxy, path, token):
        """tokengate's own answer to a decision on GET `path`, asked directly
        the way `proxy` asks: {lower-case X-Auth-* name: [values]}."""
        if proxy == "nginx":
            h = {"X-Original-URI": path, "X-Original-Method": "GET"}
        else:
            h = {"X-Forwarded-Uri": path, "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        r = http("GET", f"http://127.0.0.1:{tg_port}/_tokengate", headers=h)
        if r.status != 200:
            raise RuntimeError(f"tokengate refused the decision: {r!r}")
        return {name.lower(): r.headers.get_all(name) for name in set(r.headers.keys())
                if name.lower().startswith("x-auth-")}

    def identity_checks(self, prefix, base, tg_port, proxy, copied, empty_sent, jwt, forged, refused=False):
        """A client's forged identity headers (`forged`: every spelling that
        folds to one of tokengate's) never reach the application: on an open
        path without and with a token, and on a protected path with a JWT and
        with a token whose teams are unknown.

        `refused`: the proxy passes them to tokengate, which refuses the
        decision; the client gets 400 `invalid_request`, the application
        nothing. Otherwise the proxy removes them before tokengate sees them,
        and the application gets exactly tokengate's answer for the headers
        the recipe copies (`copied`), once each, under no other spelling; an
        empty value arrives empty (`empty_sent`, Caddy) or not at all (nginx).
        Without a token on a protected path: 400 or 401, the application
        untouched."""
        cases = [("open", "/public/logo.png", None, "", ""),
                 ("open+jwt", "/public/logo.png", jwt, "svc-rs256", ""),
                 ("jwt", "/v1/models", jwt, "svc-rs256", ""),
                 ("unknown", "/v1/models", GITHUB_TOKEN, GITHUB_LOGIN, "teams")]
        for i, (label, path, token, want_principal, want_unknown) in enumerate(cases):
            def run(path=path, token=token, want_principal=want_principal, want_unknown=want_unknown):
                answer = self.tokengate_answer(tg_port, proxy, path, token)
                problems = []
                if answer.get("x-auth-principal") != [want_principal]:
                    problems.append(f"tokengate's X-Auth-Principal {answer.get('x-auth-principal')!r}")
                if answer.get("x-auth-unknown-attributes") != [want_unknown]:
                    problems.append(f"tokengate's X-Auth-Unknown-Attributes {answer.get('x-auth-unknown-attributes')!r}"
                                    " (always sent, once)")
                before = len(EchoHandler.seen)
                sent = list(forged) + ([("Authorization", f"Bearer {token}")] if token else [])
                status, _, body = raw_request(base, "GET", path, sent)
                if refused:
                    hits = len(EchoHandler.seen) - before
                    problems += [] if status == 400 and "invalid_request" in body else \
                        [f"want 400 invalid_request; got {status} {body[:200]!r}"]
                    problems += [f"the application was reached {hits} time(s)"] if hits else []
                    return not problems, "; ".join(problems), f"{len(forged)} forged headers: 400, app untouched"
                if status != 200 or len(EchoHandler.seen) == before:
                    return False, f"want 200 from the application; got {status} {body[:200]!r}"
                seen = identity_seen(EchoHandler.seen[-1])
                want = {name.lower(): answer[name.lower()] for name in copied if name.lower() in answer}
                for name, values in sorted(want.items()):
                    expected = values if values != [""] or empty_sent else None
                    if seen.get(name) != expected:
                        problems.append(f"{name}: app got {seen.get(name)!r}, tokengate answered {values!r}")
                for name in sorted(set(seen) - set(want)):
                    problems.append(f"{name}: app got {seen[name]!r}, which tokengate did not send")
                return not problems, "; ".join(problems) + f"\n tokengate answered {answer}\n app got {seen}", \
                    f"{len(forged)} forged headers, none reached the app"

            outcome = "tokengate refuses them (400), the app is untouched" if refused \
                else "the proxy removes them, the app sees exactly tokengate's answer"
            self.expect(f"{prefix}.{i}", f"{label} {path}: {len(forged)} forged X-Auth-* spellings: {outcome}", run)

        want_denied = 400 if refused else 401

        def denied():
            before = len(EchoHandler.seen)
            status, _, body = raw_request(base, "GET", "/v1/models", forged)
            return status == want_denied and len(EchoHandler.seen) == before, \
                f"want {want_denied}, application untouched; got {status}, upstream hits {len(EchoHandler.seen) - before}"

        self.expect(f"{prefix}.{len(cases)}", f"protected path, no token, forged X-Auth-*: {want_denied}", denied)

    def tg_check(self, config, token, stdin=False, timeout=60):
        argv = [self.tokengate, "check", "--config", config]
        if not stdin:
            # `--token=` form: opaque tokens may start with "-", which a separate argument would make a flag
            argv.append(f"--token={token}")
        p = subprocess.run(argv, input=(token + "\n") if stdin else "", capture_output=True,
                           text=True, timeout=timeout, env=CHILD_ENV)
        try:
            out = json.loads(p.stdout) if p.stdout.strip() else None
        except ValueError:
            out = None
        return p.returncode, out, p

    def start_serve(self, name, config, port):
        self.start(name, [self.tokengate, "serve", "--config", config, "--listen", f"127.0.0.1:{port}"],
                   env={"TOKENGATE_LOG": os.environ.get("TOKENGATE_LOG", "info")})
        base = f"http://127.0.0.1:{port}"

        self.wait_started(name, lambda: http("GET", base + "/healthz", timeout=2).status == 200,
                          f"a 200 from {base}/healthz")
        return base

    # ------------------------------------------------------------- check 1

    def check_jwt(self):
        iss = self.idp["issuer"]
        jwks_uri = self.idp["discovery"]["jwks_uri"]
        common = {"issuer": iss, "audience": API, "claims_mapping": CLAIMS_MAPPING, **NODE_SIGNS_HIGH_S}
        configs = {
            "discovery": self.write_config("jwt-discovery.json", common),
            "jwks.uri": self.write_config("jwt-jwks-uri.json", {**common, "jwks": {"uri": jwks_uri}}),
        }
        tokens = {alg: self.token(client) for alg, client in ALG_CLIENT.items()}

        for n, (how, config) in enumerate(configs.items(), start=1):
            for alg, client in ALG_CLIENT.items():
                stdin = how == "jwks.uri"  # exercise both ways of passing the token

                def run(alg=alg, client=client, config=config, stdin=stdin):
                    head, _ = jwt_parts(tokens[alg])
                    if head["alg"] != alg:
                        return False, f"provider issued {head['alg']}, wanted {alg}"
                    rc, out, p = self.tg_check(config, tokens[alg], stdin=stdin)
                    want = {"principal": client, "attributes": self.expected_attributes(client)}
                    ok = rc == 0 and out == want
                    return ok, f"rc={rc} want={json.dumps(want)}\n got stdout={p.stdout.strip()} stderr={p.stderr.strip()[:400]}"

                via = "stdin" if stdin else "--token"
                self.expect(f"1.{n}.{alg}", f"{how}: {alg} token accepted, principal and attributes as issued (token via {via})", run)

        # A Llama Stack run.yaml, as operators have them.
        runyaml = os.path.join(self.configs, "run.yaml")
        with open(runyaml, "w") as f:
            f.write(
                "version: 2\nimage_name: interop\napis: [inference]\nproviders: {inference: []}\n"
                "server:\n  port: 8321\n  auth:\n    provider_config:\n      type: oauth2_token\n"
                f"      issuer: {json.dumps(iss)}\n      audience: {json.dumps(API)}\n"
                f"      jwks:\n        uri: {json.dumps(jwks_uri)}\n        key_recheck_period: 3600\n"
                "      claims_mapping:\n        groups: teams\n        realm_access.roles: roles\n        scope: scopes\n"
            )

        def run_yaml():
            rc, out, p = self.tg_check(runyaml, tokens["ES256"])
            want = {"principal": "svc-es256", "attributes": self.expected_attributes("svc-es256")}
            return rc == 0 and out == want, f"rc={rc} got stdout={p.stdout.strip()} stderr={p.stderr.strip()[:400]}"

        self.expect("1.3", "Llama Stack run.yaml (server.auth.provider_config): ES256 token accepted", run_yaml)

        # Issue #21: many ES256 tokens of the real provider, on default settings: both S forms
        # occur (for certain, at this count) and every token is accepted (check 1.6).
        base = self.start_serve("tokengate-es256", configs["discovery"], free_port())

        def every_es256_token():
            forms, refused = {"low": 0, "high": 0}, []
            for _ in range(48):
                token = self.token("svc-es256")
                signature = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
                forms["high" if int.from_bytes(signature[32:], "big") > P256_ORDER // 2 else "low"] += 1
                r = http("GET", base + "/v1/models", headers={"Authorization": "Bearer " + token})
                if r.status != 200:
                    refused.append(f"{r.status} {r.body[:200]!r}")
            ok = forms["low"] > 0 and forms["high"] > 0 and not refused
            return ok, f"S forms {forms}; refused {len(refused)}: {refused[:3]}"

        self.expect("1.6", "oidc-provider ES256 tokens in both S forms, all accepted on default settings",
                    every_es256_token)
        self.stop("tokengate-es256")

        toml = os.path.join(self.configs, "jwt.toml")
        with open(toml, "w") as f:
            f.write(
                f'[provider_config]\ntype = "oauth2_token"\nissuer = {json.dumps(iss)}\naudience = {json.dumps(API)}\n'
                'allow_high_s_signatures = true\n\n'
                f'[provider_config.jwks]\nuri = {json.dumps(jwks_uri)}\n\n'
                '[provider_config.claims_mapping]\ngroups = "teams"\n"realm_access.roles" = "roles"\nscope = "scopes"\n'
            )

        def run_toml():
            rc, out, p = self.tg_check(toml, tokens["EdDSA"])
            want = {"principal": "svc-eddsa", "attributes": self.expected_attributes("svc-eddsa")}
            return rc == 0 and out == want, f"rc={rc} got stdout={p.stdout.strip()} stderr={p.stderr.strip()[:400]}"

        self.expect("1.3t", "TOML config: EdDSA token accepted", run_toml)

        # Tokens that must be refused (explicit jwks.uri config; the provider is up).
        config = configs["jwks.uri"]
        good = tokens["RS256"]
        head, payload = good.split(".")[:2]
        claims = jwt_parts(good)[1]
        tampered_claims = dict(claims, groups=["admins"])
        rejects = [
            ("wrong-aud", "real token for another resource (aud https://other.tokengate.test)",
             lambda: self.token("svc-rs256", resource=OTHER)),
            ("expired", "expired 10 minutes ago, signed with the provider's current key",
             lambda: self.forge(alg="ES256", exp_in=-600, claims={"iat": int(time.time()) - 900})),
            ("wrong-iss", "issuer http://127.0.0.1:1, signed with the provider's current key",
             lambda: self.forge(alg="RS256", claims={"iss": "http://127.0.0.1:1"})),
            ("unknown-kid", "signed by an unpublished key (unknown kid)",
             lambda: self.forge(alg="EdDSA", key="stranger")),
            ("kid-swap", "signed by an unpublished key, header kid of a published key",
             lambda: self.forge(alg="RS256", key="stranger",
                                header={"kid": jwt_parts(good)[0]["kid"]})),
            ("hs256-confusion", "alg HS256 keyed with the provider's RS256 public key (alg confusion)",
             lambda: self.forge(key="public-as-hmac")),
            ("crit", "unknown critical header extension (RFC 7515 crit)",
             lambda: self.forge(alg="ES256", header={"crit": ["urn:interop:must-understand"],
                                                    "urn:interop:must-understand": True})),
            ("tampered", "real token with its payload edited",
             lambda: ".".join([head, b64url(json.dumps(tampered_claims)), good.split(".")[2]])),
            ("alg-none", "alg none, no signature",
             lambda: ".".join([b64url(json.dumps({"alg": "none", "typ": "at+jwt"})), payload, ""])),
            ("garbage", "not a token at all", lambda: "not-a-jwt"),
        ]
        def control():
            # The admin's minting is sound: the same path with nothing wrong is accepted,
            # so the rejections below are for what each one changes.
            rc, out, p = self.tg_check(config, self.forge(alg="ES256", claims={"groups": ["g"]}))
            want = {"principal": "forged-client", "attributes": {"teams": ["g"]}}
            return rc == 0 and out == want, f"want rc=0 {want}, got rc={rc} stdout={p.stdout.strip()[:300]}"

        self.expect("1.4.control", "control: a token minted with the provider's current key is accepted", control)

        for key, desc, make in rejects:
            def run(make=make):
                token = make()
                rc, out, p = self.tg_check(config, token)
                err = (out or {}).get("error", {}) if isinstance(out, dict) else {}
                return rc == 1 and err.get("code") == "invalid_token", \
                    f"want rc=1 code=invalid_token, got rc={rc} stdout={p.stdout.strip()[:400]} stderr={p.stderr.strip()[:300]}", \
                    f"tokengate: {str(err.get('detail'))[:110]}"

            self.expect(f"1.4.{key}", f"rejected (exit 1, invalid_token): {desc}", run)

        def dead_jwks():
            dead = self.write_config("jwt-dead-jwks.json",
                                     {**common, "jwks": {"uri": f"http://127.0.0.1:{free_port()}/jwks"}})
            rc, out, p = self.tg_check(dead, good)
            code = (out or {}).get("error", {}).get("code") if isinstance(out, dict) else None
            return rc == 3 and code == "temporarily_unavailable", \
                f"want rc=3 temporarily_unavailable, got rc={rc} stdout={p.stdout.strip()[:300]} stderr={p.stderr.strip()[:300]}"

        self.expect("1.5", "JWKS unreachable: exit 3, temporarily_unavailable", dead_jwks)

    # ------------------------------------------------------------- check 2

    def check_introspection(self):
        url = self.idp["discovery"]["introspection_endpoint"]
        base = {"issuer": self.idp["issuer"], "audience": OPAQUE, "claims_mapping": CLAIMS_MAPPING,
                # client_credentials tokens have no `sub` (no end user): the client is the principal
                "principal_claim": "client_id"}
        variants = {
            "client_secret_basic": ("introspector-basic", False),
            "client_secret_post": ("introspector-post", True),
        }
        for n, (method, (client, in_body)) in enumerate(variants.items(), start=1):
            intro = {"url": url, "client_id": client, "client_secret": self.secret(client)}
            if in_body:
                intro["send_secret_in_body"] = True
            config = self.write_config(f"introspection-{method}.json", {**base, "introspection": intro})
            owner = "svc-eddsa" if in_body else "svc-rs256"
            scope = "read admin"
            token = self.token(owner, resource=OPAQUE, scope=scope)

            def active(config=config, token=token, owner=owner, scope=scope, client=client, method=method):
                mark = len(self.admin("GET", "/state")["client_auth_log"])
                rc, out, p = self.tg_check(config, token)
                want = {"principal": owner, "attributes": self.expected_attributes(owner, scope)}
                calls = self.admin("GET", "/state")["client_auth_log"][mark:]
                used = sorted({(c["client_id"], c["method"], c["accepted"]) for c in calls})
                ok = rc == 0 and out == want and used == [(client, method, True)]
                return ok, (f"rc={rc} want={json.dumps(want)}\n got stdout={p.stdout.strip()} stderr={p.stderr.strip()[:400]}\n"
                            f" introspection calls seen by the provider (client, method, accepted): {used}")

            self.expect(f"2.{n}.active", f"{method}: active opaque token accepted (provider saw {method})", active)

            def revoked(config=config, token=token, owner=owner):
                self.revoke(owner, token)
                rc, out, p = self.tg_check(config, token)
                code = (out or {}).get("error", {}).get("code") if isinstance(out, dict) else None
                return rc == 1 and code == "invalid_token", \
                    f"want rc=1 invalid_token, got rc={rc} stdout={p.stdout.strip()[:300]} stderr={p.stderr.strip()[:300]}"

            self.expect(f"2.{n}.revoked", f"{method}: token revoked at the provider (RFC 7009) -> exit 1", revoked)

            def garbage(config=config):
                rc, out, p = self.tg_check(config, "garbage-" + b64url(os.urandom(24)))
                code = (out or {}).get("error", {}).get("code") if isinstance(out, dict) else None
                return rc == 1 and code == "invalid_token", \
                    f"want rc=1 invalid_token, got rc={rc} stdout={p.stdout.strip()[:300]} stderr={p.stderr.strip()[:300]}"

            self.expect(f"2.{n}.garbage", f"{method}: unknown (garbage) token -> exit 1", garbage)

        def wrong_method():
            # introspector-basic registered for client_secret_basic, configured to post: the provider refuses
            # the client, which is not the token's fault.
            intro = {"url": url, "client_id": "introspector-basic",
                     "client_secret": self.secret("introspector-basic"), "send_secret_in_body": True}
            config = self.write_config("introspection-wrong-method.json", {**base, "introspection": intro})
            token = self.token("svc-es256", resource=OPAQUE, scope="read")
            rc, out, p = self.tg_check(config, token)
            code = (out or {}).get("error", {}).get("code") if isinstance(out, dict) else None
            # Not accepted, and not a config error: the config is fine, the provider refused the client.
            return rc in (1, 3) and code in ("invalid_token", "temporarily_unavailable"), \
                f"want exit 1 or 3 with an error JSON, got rc={rc} stdout={p.stdout.strip()[:300]} stderr={p.stderr.strip()[:300]}"

        self.expect("2.3", "client registered for client_secret_basic but configured to post: not accepted", wrong_method)

        def dead():
            intro = {"url": f"http://127.0.0.1:{free_port()}/token/introspection", "client_id": "introspector-basic",
                     "client_secret": self.secret("introspector-basic")}
            config = self.write_config("introspection-dead.json", {**base, "introspection": intro})
            rc, out, p = self.tg_check(config, "some-opaque-token-" + b64url(os.urandom(12)))
            code = (out or {}).get("error", {}).get("code") if isinstance(out, dict) else None
            return rc == 3 and code == "temporarily_unavailable", \
                f"want rc=3 temporarily_unavailable, got rc={rc} stdout={p.stdout.strip()[:300]} stderr={p.stderr.strip()[:300]}"

        self.expect("2.4", "introspection endpoint unreachable: exit 3, temporarily_unavailable", dead)

        def mismatch(field, value):
            def run():
                intro = {"url": url, "client_id": "introspector-basic", "client_secret": self.secret("introspector-basic")}
                config = self.write_config(f"introspection-wrong-{field}.json",
                                           {**base, field: value, "introspection": intro})
                rc, out, p = self.tg_check(config, self.token("svc-es256", resource=OPAQUE, scope="read"))
                err = (out or {}).get("error", {}) if isinstance(out, dict) else {}
                return rc == 1 and err.get("code") == "invalid_token", \
                    f"want rc=1 invalid_token, got rc={rc} stdout={p.stdout.strip()[:300]} stderr={p.stderr.strip()[:300]}", \
                    f"tokengate: {str(err.get('detail'))[:100]}"
            return run

        self.expect("2.5", "active token whose introspected aud is not the configured audience: exit 1",
                    mismatch("audience", API))
        self.expect("2.6", "active token whose introspected iss is not the configured issuer: exit 1",
                    mismatch("issuer", "http://127.0.0.1:1"))

        def jwt_shaped():
            # oidc-provider answers 400 unsupported_token_type for anything whose first segment
            # decodes as a JWS header. The token is bad, the provider is fine: 1, not 3 -- else any
            # client can make tokengate report the provider down (503) at will.
            config = os.path.join(self.configs, "introspection-client_secret_basic.json")
            got = []
            for what, token in (("a JWT issued by the provider", self.token("svc-rs256")),
                                ("a hand-made JWT-shaped string",
                                 b64url('{"alg":"RS256","kid":"x"}') + "." + b64url("{}") + ".c2ln")):
                rc, out, p = self.tg_check(config, token)
                err = (out or {}).get("error", {}) if isinstance(out, dict) else {}
                got.append((what, rc, err.get("code"), err.get("detail")))
            ok = all(rc == 1 and code == "invalid_token" for _, rc, code, _ in got)
            return ok, "want rc=1 invalid_token for each, got:\n" + "\n".join(
                f"  {what}: rc={rc} code={code} detail={detail}" for what, rc, code, detail in got)

        self.expect("2.7", "JWT-shaped token sent to the introspection provider (it answers 400): exit 1, not 3", jwt_shaped)

    # ------------------------------------------------------------- check 3

    def check_rotation(self):
        config = self.write_config("serve-rotation.json", {
            "issuer": self.idp["issuer"], "audience": API, "claims_mapping": CLAIMS_MAPPING, **NODE_SIGNS_HIGH_S,
            "jwks": {"uri": self.idp["discovery"]["jwks_uri"], "key_recheck_period": 3600,
                     "refresh_cooldown": f"{int(COOLDOWN * 1000)}ms", "stale_grace": "1h"},
        }, extra={"realm": "interop"})
        port = free_port()
        base = self.start_serve("tokengate-rotation", config, port)
        self.record("3.0", f"tokengate serve ready on {base} (/healthz 200)", True)

        def readyz(want_status, want_body):
            r = http("GET", base + "/readyz", timeout=10)
            return r.status == want_status and r.body.startswith(want_body), f"want {want_status} {want_body!r}, got {r!r}"

        self.expect("3.0.ready", "/readyz 200 `ready` (key set loaded)",
                    lambda: readyz(200, "ready"))

        def decide(token, uri="/v1/models"):
            headers = {"X-Original-URI": uri, "X-Original-Method": "GET"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            return http("GET", base + "/auth", headers=headers)

        def allowed(r, client):
            attrs = json.loads(r.headers.get("X-Auth-Attributes") or "null")
            want = self.expected_attributes(client)
            ok = (r.status == 200 and r.headers.get("X-Auth-Principal") == client and attrs == want
                  and r.headers.get("X-Auth-Attr-Teams") == ",".join(want["teams"])
                  and r.headers.get("X-Auth-Attr-Roles") == ",".join(want["roles"]))
            return ok, f"want 200 principal={client} attributes={json.dumps(want)}\n got {r!r}"

        def metrics():
            r = http("GET", base + "/metrics")
            return r.status == 200 and "WWW-Authenticate" not in r.headers, f"got {r!r}"

        self.expect("3.0m", "/metrics answers 200 without a token (not a decision)", metrics)

        old = {alg: self.token(client) for alg, client in ALG_CLIENT.items()}
        self.expect("3.1", "before rotation: RS256 token allowed (200, X-Auth-Principal, X-Auth-Attributes, X-Auth-Attr-*)",
                    lambda: allowed(decide(old["RS256"]), "svc-rs256"))

        def denied_shape():
            r = decide("garbage.garbage.garbage")
            www = r.headers.get("WWW-Authenticate") or ""
            body = r.json() or {}
            ok = (r.status == 401 and www.startswith("Bearer ") and 'realm="interop"' in www
                  and 'error="invalid_token"' in www and body.get("error", {}).get("code") == "invalid_token")
            return ok, f"got {r!r}"

        self.expect("3.2", "garbage token: 401, WWW-Authenticate Bearer realm/error, JSON error body", denied_shape)

        def forwarded_headers():
            r = http("GET", base + "/", headers={"Authorization": f"Bearer {old['EdDSA']}",
                                                 "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/v1/files",
                                                 "X-Forwarded-Host": "api.example", "X-Forwarded-Proto": "https"})
            return allowed(r, "svc-eddsa")

        self.expect("3.1f", "Traefik-style X-Forwarded-Method/-Uri request on /: EdDSA token allowed", forwarded_headers)

        kid_before = jwt_parts(old["RS256"])[0]["kid"]
        new_kid = self.admin("POST", "/rotate?alg=RS256")["kid"]
        jwks = http("GET", self.idp["discovery"]["jwks_uri"]).json()
        front = jwks["keys"][0]["kid"]
        new_token = self.token("svc-rs256")
        self.record("3.3", f"provider rotated RS256: new kid {new_kid} first in its JWKS, new tokens signed with it",
                    front == new_kid and jwt_parts(new_token)[0]["kid"] == new_kid and new_kid != kid_before,
                    f"front={front} token kid={jwt_parts(new_token)[0]['kid']} old kid={kid_before}")

        def rotated():
            # The first request may fall within refresh_cooldown of the startup fetch: allow that long.
            r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(decide(new_token)), COOLDOWN * 4 + 2, 0.25)
            return allowed(r or decide(new_token), "svc-rs256")

        self.expect("3.4", "token signed by the new key accepted by the running server, no restart", rotated)
        self.expect("3.5", "token signed by the previous key (still published) accepted",
                    lambda: allowed(decide(old["RS256"]), "svc-rs256"))

        def unknown_kid_up():
            time.sleep(COOLDOWN + 0.2)
            r = decide(self.forge(alg="ES256", key="stranger"))
            www = r.headers.get("WWW-Authenticate") or ""
            return r.status == 401 and 'error="invalid_token"' in www, f"got {r!r}"

        self.expect("3.6", "unknown kid while the provider is up: 401 invalid_token", unknown_kid_up)

        # Prepare tokens the server cannot know yet, then stop the provider.
        unseen_kid = self.admin("POST", "/rotate?alg=ES256")["kid"]
        unseen = self.token("svc-es256")
        forged = self.forge(alg="EdDSA", key="stranger", header={"kid": "never-published-" + b64url(os.urandom(6))})
        self.admin("POST", "/stop")
        stopped = wait_for(lambda: not self.admin("GET", "/state")["running"], 5)
        self.record("3.7", "provider stopped (its listener closed)", bool(stopped))
        time.sleep(COOLDOWN + 0.2)

        for alg, client in ALG_CLIENT.items():
            self.expect(f"3.8.{alg}", f"provider down: {alg} token of a known key still accepted",
                        lambda alg=alg, client=client: allowed(decide(old[alg]), client))
        self.expect("3.8.rot", "provider down: token of the rotated-in RS256 key still accepted",
                    lambda: allowed(decide(new_token), "svc-rs256"))

        def unavailable(token, what):
            def run():
                time.sleep(COOLDOWN + 0.2)
                r = decide(token)
                body = r.json() or {}
                ok = r.status == 503 and body.get("error", {}).get("code") == "temporarily_unavailable"
                return ok, f"{what}: want 503 temporarily_unavailable, got {r!r}"
            return run

        self.expect("3.9.kid", f"provider down: real token with a kid the server has not seen ({unseen_kid}) -> 503",
                    unavailable(unseen, "unseen kid"))
        self.expect("3.9.forged", "provider down: hand-crafted token with an unknown kid -> 503",
                    unavailable(forged, "forged kid"))
        self.expect("3.9.ready", "provider down, keys within stale_grace: /readyz stays 200 (known keys still work)",
                    lambda: readyz(200, "ready"))

        self.admin("POST", "/start")

        def recovered():
            r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(decide(unseen)), COOLDOWN * 4 + 3, 0.25)
            return allowed(r or decide(unseen), "svc-es256")

        self.expect("3.10", "provider back: the token of the new ES256 key is accepted", recovered)

        jwks_path = "GET " + urllib.parse.urlsplit(self.idp["discovery"]["jwks_uri"]).path

        def jwks_fetches():
            return self.admin("GET", "/state")["requests"].get(jwks_path, 0)

        def burst(tokens, workers=10, pause=0.0):
            results = [None] * len(tokens)

            def worker(i):
                try:
                    results[i] = decide(tokens[i]).status
                except Exception as e:  # noqa: BLE001
                    results[i] = repr(e)

            for start in range(0, len(tokens), workers):
                threads = [threading.Thread(target=worker, args=(i,))
                           for i in range(start, min(start + workers, len(tokens)))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                time.sleep(pause)
            return results

        def rotation_storm():
            self.admin("POST", "/rotate?alg=EdDSA")
            token = self.token("svc-eddsa")
            time.sleep(COOLDOWN + 0.2)
            before = jwks_fetches()
            statuses = burst([token] * 40, workers=40)
            fetched = jwks_fetches() - before
            ok = all(s == 200 for s in statuses) and 1 <= fetched <= 2
            return ok, f"statuses={sorted(set(map(str, statuses)))} ({statuses.count(200)}/40 allowed), JWKS fetches={fetched}", \
                f"{statuses.count(200)}/40 allowed, {fetched} JWKS fetch(es)"

        self.expect("3.11", "40 concurrent requests with a just-rotated kid: all allowed, JWKS fetched at most twice",
                    rotation_storm)

        def random_kids():
            time.sleep(COOLDOWN + 0.2)
            tokens = [self.forge(alg="ES256", key="stranger", header={"kid": "random-" + b64url(os.urandom(6))})
                      for _ in range(60)]
            before = jwks_fetches()
            t0 = time.monotonic()
            statuses = burst(tokens, workers=10, pause=0.45)  # spread over ~2.5 cooldowns
            elapsed = time.monotonic() - t0
            fetched = jwks_fetches() - before
            limit = int(elapsed / COOLDOWN) + 2
            ok = all(s == 401 for s in statuses) and fetched <= limit
            return ok, f"statuses={sorted(set(map(str, statuses)))}, JWKS fetches={fetched} in {elapsed:.2f}s (limit {limit})", \
                f"{fetched} JWKS fetch(es) for 60 unknown kids in {elapsed:.1f}s"

        self.expect("3.12", "60 tokens with random unknown kids: all 401, JWKS fetches bounded by refresh_cooldown",
                    random_kids)
        self.stop("tokengate-rotation")

    # ------------------------------------------------------------- check 4

    def start_upstream(self):
        self.upstream = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
        threading.Thread(target=self.upstream.serve_forever, daemon=True).start()
        return self.upstream.server_address[1]

    def start_nginx(self, tg_port, upstream_port, name="nginx", server_extra=""):
        """nginx with the shipped snippet; `server_extra` goes into its server block."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        root = os.path.join(self.root, name)
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(root, "nginx-temp", d), exist_ok=True)
        port = free_port()
        with open(os.path.join(self.repo, "interop", "nginx.conf.template")) as f:
            text = f.read()
        fields = {
            "@ROOT@": root, "@NGINX_PORT@": str(port), "@TOKENGATE_PORT@": str(tg_port),
            "@UPSTREAM_PORT@": str(upstream_port),
            "@SNIPPET@": os.path.join(self.repo, "config", "nginx-auth-request.conf"),
            "@USER@": "user root;" if os.geteuid() == 0 else "",
            "@SERVER_EXTRA@": server_extra,
        }
        for k, v in fields.items():
            text = text.replace(k, v)
        conf = os.path.join(root, "nginx.conf")
        with open(conf, "w") as f:
            f.write(text)
        argv = [nginx, "-p", root + "/", "-c", conf, "-e", os.path.join(root, "nginx-error.log"),
                "-g", f"daemon off; pid {root}/nginx.pid;"]
        test = subprocess.run(argv[:-2] + ["-t"], capture_output=True, text=True, env=CHILD_ENV)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{test.stdout}{test.stderr}")
        self.start(name, argv)
        base = f"http://127.0.0.1:{port}"

        def up():
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        self.wait_started(name, up, f"a listener on {base}", log=os.path.join(root, "nginx-error.log"))
        return base

    def check_nginx(self):
        common = {"issuer": self.idp["issuer"], "audience": API, "claims_mapping": CLAIMS_MAPPING, **NODE_SIGNS_HIGH_S,
                  "jwks": {"refresh_cooldown": f"{int(COOLDOWN * 1000)}ms"}}
        config = self.write_chain_config("serve-nginx.json", common, extra={
            "realm": "interop", "forward_auth": {"proxy": "nginx"}, "open_paths": ["/public/*"],
            "route_policy": {"default": "permit", "rules": [{"path": "/admin*", "methods": ["DELETE"], "forbid": "all"}]}})
        tg_port = free_port()
        self.start_serve("tokengate-nginx", config, tg_port)
        up_port = self.start_upstream()
        base = self.start_nginx(tg_port, up_port)
        self.record("4.0", f"nginx {base} -> auth_request tokengate serve :{tg_port} (OIDC discovery) -> upstream :{up_port}", True)

        def get(path, token=None, headers=None, method="GET", data=None):
            h = dict(headers or {})
            if token is not None:
                h["Authorization"] = f"Bearer {token}"
            return http(method, base + path, headers=h, data=data)

        def reached(r, client, spoofed=False):
            echo = r.json() or {}
            seen = echo.get("headers", {})
            want = self.expected_attributes(client)
            problems = []
            if r.status != 200 or "headers" not in echo:
                problems.append("the upstream did not answer")
            if seen.get("x-auth-principal") != client:
                problems.append(f"x-auth-principal={seen.get('x-auth-principal')!r}")
            try:
                attrs = json.loads(seen.get("x-auth-attributes") or "null")
            except ValueError:
                attrs = seen.get("x-auth-attributes")
            if attrs != want:
                problems.append(f"x-auth-attributes={attrs!r}")
            for name in ("teams", "roles", "scopes"):
                if seen.get(f"x-auth-attr-{name}") != ",".join(want[name]):
                    problems.append(f"x-auth-attr-{name}={seen.get(f'x-auth-attr-{name}')!r}")
            if seen.get("x-auth-tenant") not in (None, ""):
                # These tokens carry no tenant: any value is the client's own copy.
                problems.append(f"x-auth-tenant={seen.get('x-auth-tenant')!r}")
            if not seen.get("authorization", "").startswith("Bearer "):
                problems.append("Authorization not passed to the upstream")
            return not problems, f"{'; '.join(problems)}\n want principal={client} attributes={json.dumps(want)}\n got {r!r}"

        tokens = {alg: self.token(client) for alg, client in ALG_CLIENT.items()}
        for alg, client in ALG_CLIENT.items():
            self.expect(f"4.1.{alg}", f"allowed ({alg}): upstream reached with X-Auth-Principal, X-Auth-Attributes, X-Auth-Attr-*",
                        lambda alg=alg, client=client: reached(get("/v1/chat/completions?stream=false", tokens[alg]), client))

        def post():
            r = get("/v1/files", tokens["ES256"], method="POST", data='{"hello": "world"}',
                    headers={"Content-Type": "application/json"})
            echo = r.json() or {}
            ok, detail = reached(r, "svc-es256")
            return ok and echo.get("method") == "POST" and echo.get("body") == '{"hello": "world"}', detail

        self.expect("4.2", "allowed POST: method and body reach the upstream", post)

        # nginx passes the client's headers to the auth subrequest: tokengate
        # refuses a copy of its own (400), which the snippet's error_page
        # hands to the client as 400.
        def spoof():
            before = len(EchoHandler.seen)
            r = get("/v1/models", tokens["EdDSA"], headers={
                "X-Auth-Principal": "root", "X-Auth-Attributes": '{"roles":["admin"]}', "X-Auth-Tenant": "globex",
                "X-Auth-Attr-Roles": "admin,superuser", "X-Auth-Attr-Teams": "everyone"})
            code = (r.json() or {}).get("error", {}).get("code")
            return r.status == 400 and code == "invalid_request" and len(EchoHandler.seen) == before, \
                f"want 400 invalid_request, upstream untouched; upstream hits {len(EchoHandler.seen) - before}; got {r!r}"

        self.expect("4.3", "valid token, client-sent X-Auth-* headers: 400 (tokengate refuses them), upstream not reached",
                    spoof)

        def denied(token, want_error, headers=None):
            def run():
                before = len(EchoHandler.seen)
                r = get("/v1/models", token, headers=headers)
                www = r.headers.get("WWW-Authenticate") or ""
                ok = r.status == 401 and www.startswith("Bearer ") and 'realm="interop"' in www
                if want_error:
                    ok = ok and 'error="invalid_token"' in www
                ok = ok and len(EchoHandler.seen) == before
                return ok, f"want 401 + WWW-Authenticate Bearer{' error=invalid_token' if want_error else ''}, upstream untouched;" \
                           f" upstream hits {len(EchoHandler.seen) - before}; got {r!r}"
            return run

        self.expect("4.4", "no token: 401 with WWW-Authenticate: Bearer, upstream not reached", denied(None, False))
        self.expect("4.5", "garbage token: 401, WWW-Authenticate error=\"invalid_token\" passed through",
                    denied("garbage", True))
        self.expect("4.6", "token for another audience: 401 invalid_token",
                    denied(self.token("svc-eddsa", resource=OTHER), True))
        self.expect("4.7", "spoofed X-Auth-Principal without a token: 400 before any provider, upstream not reached",
                    through_proxy(base, "GET", "/v1/models", {"X-Auth-Principal": "root"}, 400))

        # Every spelling, and an X-Auth-Attr-* the snippet does not list: the
        # dash ones reach tokengate, which refuses the request; nginx drops the
        # `_` ones by default, so tokengate never sees those and the app gets
        # exactly its answer. With `underscores_in_headers on` or
        # `ignore_invalid_headers off` the `_` ones reach tokengate too, and
        # are refused (the snippet's own `_` lines are the second line).
        snippet_copies = IDENTITY_HEADERS
        forged = forged_identity(IDENTITY_HEADERS + ["X-Auth-Attr-Groups"])
        # What stock nginx drops as invalid names: `_` and `.` spellings.
        invalid_names = underscored(forged) + dotted(IDENTITY_HEADERS + ["X-Auth-Attr-Groups"])
        self.identity_checks("4.17", base, tg_port, "nginx", snippet_copies, False, tokens["RS256"], forged,
                             refused=True)
        self.identity_checks("4.17.u", base, tg_port, "nginx", snippet_copies, False, tokens["RS256"],
                             invalid_names)
        under = self.start_nginx(tg_port, up_port, name="nginx-underscores", server_extra="underscores_in_headers on;")
        self.record("4.18.up", f"nginx {under} with underscores_in_headers on", True)
        self.identity_checks("4.18", under, tg_port, "nginx", snippet_copies, False, tokens["RS256"],
                             invalid_names, refused=True)
        self.stop("nginx-underscores")
        invalid = self.start_nginx(tg_port, up_port, name="nginx-invalid-headers",
                                   server_extra="ignore_invalid_headers off;")
        self.record("4.19.up", f"nginx {invalid} with ignore_invalid_headers off", True)
        self.identity_checks("4.19", invalid, tg_port, "nginx", snippet_copies, False, tokens["RS256"],
                             invalid_names, refused=True)
        self.stop("nginx-invalid-headers")
        # Names that only look like tokengate's are not refused.
        for i, name in enumerate(["X-Auth-Request-User", "X_Auth_Request_Groups", "X-Authorization-Foo"]):
            self.expect(f"4.20.{i}", f"valid token, client-sent {name}: not one of tokengate's, allowed",
                        through_proxy(base, "GET", "/v1/models", {name: "root"}, 200, tokens["RS256"], "svc-rs256"))

        def bypass(cid, title, method, target, headers, want, token=None):
            self.expect(cid, title, through_proxy(base, method, target, headers, want, token))

        self.expect("4.12.open", "open path without a token reaches the upstream",
                    lambda: (raw_request(base, "GET", "/public/logo.png")[0] == 200, "want 200"))
        bypass("4.12", "no token, client-sent X-Forwarded-Uri: /public/x on GET /admin/users: 401",
               "GET", "/admin/users", {"X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "GET"}, 401)
        bypass("4.13", "valid token, client-sent X-Forwarded-Method: GET on DELETE /admin/users: route_policy 403",
               "DELETE", "/admin/users", {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/admin/users"}, 403,
               token=tokens["RS256"])
        bypass("4.14", "raw UTF-8 byte in the query: 400, never a decision on /_tokengate",
               "GET", b"/admin/users?q=caf\xc3\xa9", {}, 400)
        bypass("4.16", "valid token, DELETE /ADMIN/users (case-folding back ends reach /admin): 403",
               "DELETE", "/ADMIN/users", {}, 403, token=tokens["RS256"])
        for i, trick in enumerate(["/public/x#/../../admin/users", "/public/%EF%BC%8E%EF%BC%8E/admin",
                                   "/public/..;/admin/users", "/;/admin", "/.;/admin", "/x/..;/admin",
                                   "/public/%252e%252e/admin", "/public/%2e%2e/admin", "/exact;jsessionid=1",
                                   "/exact.", "/exact%20"]):
            bypass(f"4.15.{i}", f"path trick {trick}: 400", "GET", trick, {}, 400)

        def unavailable(what, token):
            # nginx makes any auth subrequest status but 2xx/401/403 a 500; the snippet's
            # error_page turns that into 503 + Retry-After.
            def run():
                before = len(EchoHandler.seen)
                r = get("/v1/models", token)
                body = r.json() or {}
                ok = (r.status == 503 and r.headers.get("Retry-After") == "5"
                      and body.get("error", {}).get("code") == "temporarily_unavailable"
                      and len(EchoHandler.seen) == before)
                return ok, f"{what}: want 503 + Retry-After (5xx from nginx, mapped by the snippet), upstream untouched; got {r!r}"
            return run

        # The IdP goes away; a token with a kid tokengate has not seen needs it.
        unseen_kid = self.admin("POST", "/rotate?alg=EdDSA")["kid"]
        unseen = self.token("svc-eddsa")
        self.admin("POST", "/stop")
        time.sleep(COOLDOWN + 0.2)
        self.expect("4.8", f"provider stopped, token with unseen kid {unseen_kid}: 503 (tokengate 503 -> nginx 500 -> snippet 503)",
                    unavailable("provider down", unseen))
        self.expect("4.9", "provider stopped, token of a known key: still reaches the upstream",
                    lambda: reached(get("/v1/models", tokens["RS256"]), "svc-rs256"))
        self.admin("POST", "/start")

        self.stop("tokengate-nginx")
        self.expect("4.10", "tokengate itself down: 503 (snippet's error_page)", unavailable("tokengate down", tokens["RS256"]))

        # Same port, a config whose JWKS is dead.
        dead = self.write_config("serve-nginx-dead-jwks.json", {
            "issuer": self.idp["issuer"], "audience": API, "claims_mapping": CLAIMS_MAPPING, **NODE_SIGNS_HIGH_S,
            "jwks": {"uri": f"http://127.0.0.1:{free_port()}/jwks"}}, extra={"realm": "interop"})
        self.start("tokengate-nginx-dead", [self.tokengate, "serve", "--config", dead, "--listen", f"127.0.0.1:{tg_port}"],
                   env={"TOKENGATE_LOG": os.environ.get("TOKENGATE_LOG", "info")})

        def listening():
            with socket.create_connection(("127.0.0.1", tg_port), timeout=1):
                return True

        try:
            self.wait_started("tokengate-nginx-dead", listening, f"a listener on port {tg_port}")
            started = True
        except (ServiceExited, RuntimeError) as e:
            print(f"# {e}", flush=True)
            started = False
        self.expect("4.11", "tokengate whose JWKS is unreachable: valid token gets 503, upstream untouched",
                    lambda: (bool(started), "tokengate did not start") if not started
                    else unavailable("dead JWKS", tokens["RS256"])())

        def not_ready():
            r = http("GET", f"http://127.0.0.1:{tg_port}/readyz", timeout=10)
            return r.status == 503 and r.body.startswith("not ready: "), f"want 503 'not ready: …', got {r!r}"

        self.expect("4.11.ready", "tokengate whose JWKS is unreachable: /readyz 503 `not ready: <reason>`",
                    not_ready)
        self.stop("tokengate-nginx-dead")

    def check_caddy(self):
        caddy = shutil.which("caddy")
        if not caddy:
            raise RuntimeError("caddy is not installed (apt-get install caddy)")
        common = {"issuer": self.idp["issuer"], "audience": API, "claims_mapping": CLAIMS_MAPPING}
        config = self.write_chain_config("serve-caddy.json", common, extra={
            "realm": "interop", "forward_auth": {"proxy": "caddy"}, "open_paths": ["/public/*"],
            "route_policy": {"default": "permit", "rules": [{"path": "/admin*", "methods": ["DELETE"], "forbid": "all"}]}})
        tg_port = free_port()
        self.start_serve("tokengate-caddy", config, tg_port)
        up_port = self.start_upstream()
        base = self.start_caddy(caddy, "caddy", tg_port, up_port)
        self.record("5.0", f"caddy {base} -> forward_auth tokengate serve :{tg_port} -> upstream :{up_port}", True)
        token = self.token("svc-rs256")

        def case(cid, title, method, target, headers, want, with_token=False, principal=None):
            self.expect(cid, title, through_proxy(base, method, target, headers, want,
                                                  token if with_token else None, principal))

        case("5.1", "valid token: upstream reached with X-Auth-Principal", "GET", "/v1/models", {}, 200,
             with_token=True, principal="svc-rs256")
        case("5.2", "no token: 401", "GET", "/v1/models", {}, 401)
        case("5.3", "no token, client-sent X-Original-URI: /public/x on /admin/users: 401",
             "GET", "/admin/users", {"X-Original-URI": "/public/x", "X-Original-Method": "GET"}, 401)
        case("5.4", "no token, client-sent X-Forwarded-Uri: /public/x (Caddy replaces it): 401",
             "GET", "/admin/users", {"X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "GET"}, 401)
        case("5.5", "valid token, client-sent X-Forwarded-Method: GET on DELETE /admin/users: 403",
             "DELETE", "/admin/users", {"X-Forwarded-Method": "GET"}, 403, with_token=True)
        case("5.6", "open path without a token: upstream reached", "GET", "/public/logo.png", {}, 200)

        def anonymous_headers():
            status, _, body = raw_request(base, "GET", "/public/logo.png",
                                          {"X-Auth-Principal": "root", "X-Auth-Tenant": "globex"})
            seen = (json.loads(body) if status == 200 else {}).get("headers", {})
            principal = seen.get("x-auth-principal")
            attributes = seen.get("x-auth-attributes")
            tenant = seen.get("x-auth-tenant")
            return status == 200 and principal in (None, "") and attributes in (None, "", "{}") \
                and tenant in (None, ""), \
                f"want no identity (and no Caddy placeholder) on an anonymous open path; got {status} {seen}"

        self.expect("5.6.anon", "open path, client-sent X-Auth-Principal: root, X-Auth-Tenant: globex: the app sees no identity",
                    anonymous_headers)
        case("5.9", "valid token, DELETE /ADMIN/users: 403", "DELETE", "/ADMIN/users", {}, 403, with_token=True)
        for i, trick in enumerate(["/public/..;/admin/users", "/public/%252e%252e/admin", "/exact;jsessionid=1"]):
            case(f"5.7.{i}", f"path trick {trick}: refused (400), upstream untouched", "GET", trick, {}, 400)
        case("5.8", "valid token, client-sent X-Auth-Principal: root is replaced", "GET", "/v1/models",
             {"X-Auth-Principal": "root"}, 200, with_token=True, principal="svc-rs256")
        # The recipe copies only what tokengate always sends, and deletes every
        # client header named X-Auth-* in any spelling, X-Auth-Attr-* included.
        caddy_copies = ["X-Auth-Principal", "X-Auth-Tenant", "X-Auth-Attributes", "X-Auth-Unknown-Attributes"]
        # Caddy runs them before forward_auth, so tokengate never sees the client's copies.
        self.identity_checks("5.10", base, tg_port, "caddy", caddy_copies, True, token,
                             forged_identity(IDENTITY_HEADERS + ["X-Auth-Attr-Groups", "X-Auth-Request-User"]))
        # `.` spellings match none of the recipe's patterns: Caddy passes them
        # on, to tokengate too, which refuses the request.
        self.identity_checks("5.12", base, tg_port, "caddy", caddy_copies, True, token,
                             dotted(IDENTITY_HEADERS + ["X-Auth-Attr-Groups"]), refused=True)
        self.stop("caddy")
        # Without those lines, forward_auth passes the client's headers to
        # tokengate (as nginx and Traefik do), which refuses the request.
        bare = self.start_caddy(caddy, "caddy-unstripped", tg_port, up_port, strip=False)
        self.record("5.11.up", f"caddy {bare} without the recipe's request_header lines", True)
        self.identity_checks("5.11", bare, tg_port, "caddy", caddy_copies, True, token,
                             forged_identity(IDENTITY_HEADERS + ["X-Auth-Attr-Groups"]), refused=True)
        self.expect("5.11.ok", "without them, valid token, client-sent X-Auth-Request-User: not one of tokengate's, "
                    "allowed", through_proxy(bare, "GET", "/v1/models", {"X-Auth-Request-User": "root"}, 200,
                                             token, "svc-rs256"))
        self.stop("caddy-unstripped")
        self.stop("tokengate-caddy")

    def start_caddy(self, caddy, name, tg_port, up_port, strip=True):
        """Caddy with interop/Caddyfile.template; `strip=False` leaves out its
        `request_header -X…` lines (the client's X-Auth-* then reach tokengate)."""
        port = free_port()
        root = os.path.join(self.root, name)
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(self.repo, "interop", "Caddyfile.template")) as f:
            text = f.read()
        for k, v in {"@CADDY_PORT@": str(port), "@TOKENGATE_PORT@": str(tg_port), "@UPSTREAM_PORT@": str(up_port)}.items():
            text = text.replace(k, v)
        if not strip:
            kept = [line for line in text.splitlines() if not line.strip().startswith("request_header -X")]
            if len(kept) == len(text.splitlines()):
                raise RuntimeError("Caddyfile.template has no `request_header -X…` lines to leave out")
            text = "\n".join(kept) + "\n"
        caddyfile = os.path.join(root, "Caddyfile")
        with open(caddyfile, "w") as f:
            f.write(text)
        env = dict(CHILD_ENV, HOME=root, XDG_DATA_HOME=root, XDG_CONFIG_HOME=root)
        self.start(name, [caddy, "run", "--config", caddyfile, "--adapter", "caddyfile"], env=env)
        base = f"http://127.0.0.1:{port}"
        self.wait_started(name, lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                          f"a listener on {base}")
        return base

    # ------------------------------------------------------------- main

    def check_waits(self):
        """0.1: a service that dies while awaited fails the wait at once, with its log (#21)."""
        self.start("exits-at-once", ["sh", "-c", "echo 'listen: address already in use'; exit 3"])
        began = time.monotonic()
        try:
            self.wait_started("exits-at-once", lambda: False, "a listener")
            ok, detail = False, "the wait returned"
        except ServiceExited as e:
            ok, detail = "address already in use" in str(e) and "exited with 3" in str(e), str(e)
        took = time.monotonic() - began
        self.record("0.1", "a service that exits while awaited fails the wait at once, with its log tail",
                    ok and took < 5, f"{detail} (after {took:.1f}s)")

    def run(self):
        only = set((self.args.only or "1,2,3,4,5").split(","))
        started = time.monotonic()
        try:
            self.check_waits()
            self.start_idp()
            for num, fn, title in (("1", self.check_jwt, "oauth2_token JWT: discovery and jwks.uri"),
                                   ("2", self.check_introspection, "RFC 7662 introspection"),
                                   ("3", self.check_rotation, "key rotation and provider outage (tokengate serve)"),
                                   ("4", self.check_nginx, "nginx auth_request"),
                                   ("5", self.check_caddy, "Caddy forward_auth")):
                if num not in only:
                    continue
                print(f"# {num}. {title}", flush=True)
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - a broken step fails the check, not the suite
                    self.record(f"{num}.x", f"check {num} aborted", False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
                finally:
                    if self.idp and not self.admin_running():
                        self.admin("POST", "/start")
        except Exception as e:  # noqa: BLE001
            self.record("setup", "suite setup", False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
        finally:
            failed = [cid for cid, ok in self.results if not ok]
            if failed:
                self.dump_logs()
            self.stop_all()
        passed = sum(1 for _, ok in self.results if ok)
        print(f"# interop suite took {time.monotonic() - started:.1f}s; failed: {', '.join(failed) or 'none'}"
              + (f"; known tokengate issues (XFAIL, not counted): {', '.join(self.xfailed)}" if self.xfailed else ""))
        print(f"interop: {passed} passed, {len(failed)} failed")
        return 1 if failed or not self.results else 0

    def admin_running(self):
        try:
            return self.admin("GET", "/state")["running"]
        except Exception:  # noqa: BLE001
            return True

    def dump_logs(self):
        print("# ---- log tails (for the failures above)")
        for name in sorted(os.listdir(self.logs)):
            print(f"# ---- {name}")
            sys.stdout.write(tail(os.path.join(self.logs, name), 30))
        err = os.path.join(self.root, "nginx", "nginx-error.log")
        if os.path.exists(err):
            print("# ---- nginx-error.log")
            sys.stdout.write(tail(err, 30))
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokengate", required=True, help="the tokengate binary")
    ap.add_argument("--root", required=True, help="scratch directory (configs, logs, nginx prefix)")
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--only", help="comma-separated check numbers, e.g. 1,3")
    args = ap.parse_args()
    suite = Suite(args)

    def on_signal(signum, _frame):
        suite.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.exit(suite.run())


if __name__ == "__main__":
    main()
