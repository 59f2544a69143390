#!/usr/bin/env bash
# Instructions per request of `tokengate serve` (issue #14), counted by
# valgrind's callgrind: the same binary and inputs give the same count within
# about 1%, whatever else the machine is doing, so an A/B of two commits needs
# no quiet machine and no alternating rounds (load tests vary by ±10% here).
#
#   scripts/instructions.sh                  # the tokengate built from this tree
#   scripts/instructions.sh OTHER_BINARY     # another build, for an A/B
#
# Starts examples/loadtest_idp (a JWKS on 127.0.0.1 and tokens), runs
# `tokengate serve` under callgrind with its default settings (the decision
# log on, to a file), warms it up, then counts $INSTRUCTIONS_REQUESTS requests
# of `/healthz` (the HTTP floor), as many with one token repeated
# (verified-token cache hits) and as many with distinct tokens, sent one after
# another on one keep-alive connection.
#
# Counts are user-space instructions of every thread (the log writer
# included), not time, and not the kernel. Under valgrind the sha2 crate
# does not see SHA-NI and hashes in software (about 36k instructions per
# request for the verified-token cache key), so compare counts with each
# other, not with a CPU profile.
#
# Environment: INSTRUCTIONS_ALG (RS256 | ES256 | EdDSA) [RS256],
# INSTRUCTIONS_REQUESTS [1000]. Needs valgrind (with callgrind_control) and python3.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
ALG="${INSTRUCTIONS_ALG:-RS256}"
N="${INSTRUCTIONS_REQUESTS:-1000}"
for tool in valgrind callgrind_control python3; do
  command -v "$tool" >/dev/null || { echo "instructions: $tool is needed (apt-get install valgrind python3)" >&2; exit 2; }
done

(cd "$REPO" && cargo build --release --quiet --bin tokengate --example loadtest_idp)
BIN="${1:-$TARGET/release/tokengate}"
ROOT="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-instructions.XXXXXX")"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$ROOT"' EXIT

"$TARGET/release/examples/loadtest_idp" --dir "$ROOT" --count $((2 * N + 300)) --alg "$ALG" 2>"$ROOT/idp.log" &
PIDS+=($!)
for _ in $(seq 1 600); do [ -f "$ROOT/ready" ] && break; sleep 0.2; done
[ -f "$ROOT/ready" ] || { echo "instructions: loadtest_idp did not start" >&2; exit 2; }

(cd "$ROOT" && exec valgrind --tool=callgrind --callgrind-out-file="$ROOT/callgrind.%p" \
  "$BIN" serve --config "$ROOT/config.yaml" --listen 127.0.0.1:0 >"$ROOT/serve.out" 2>"$ROOT/serve.log") &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 1 600); do grep -q "listening on" "$ROOT/serve.out" 2>/dev/null && break; sleep 0.2; done
PORT="$(sed -n 's#^.*listening on http://[^:]*:##p' "$ROOT/serve.out" | head -1)"
[ -n "$PORT" ] || { echo "instructions: tokengate did not start: $(tail -5 "$ROOT/serve.log")" >&2; exit 2; }

# send MODE FIRST COUNT: COUNT requests on one connection; every answer must be 200.
send() {
  python3 - "$PORT" "$1" "$ROOT/tokens.txt" "$(head -1 "$ROOT/repeat.txt")" "$2" "$3" <<'EOF'
import http.client, sys
port, mode, tokens, repeat, first, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
lines = [l.strip() for l in open(tokens) if l.strip()]
c = http.client.HTTPConnection("127.0.0.1", int(port))
for i in range(count):
    if mode == "healthz":
        c.request("GET", "/healthz")
    else:
        token = repeat if mode == "repeated" else lines[first + i]
        c.request("GET", "/auth", headers={"Authorization": "Bearer " + token,
                                           "X-Forwarded-Uri": "/v1/models", "X-Forwarded-Method": "GET"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{mode} request {i}: status {r.status}")
EOF
}

send healthz 0 200
send repeated 0 200
send distinct 0 200
callgrind_control --zero "$SERVER" >/dev/null
send healthz 0 "$N"
callgrind_control --dump=healthz "$SERVER" >/dev/null
send repeated 0 "$N"
callgrind_control --dump=repeated "$SERVER" >/dev/null
send distinct 250 "$N"
callgrind_control --dump=distinct "$SERVER" >/dev/null

total() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" | head -1; }
files=("$ROOT"/callgrind.*.1 "$ROOT"/callgrind.*.2 "$ROOT"/callgrind.*.3)
per() { echo $(($(total "$1") / N)); }
echo "| $ALG, instructions per request ($N each) | /healthz | repeated token | distinct tokens |"
echo "|---|---:|---:|---:|"
echo "| $BIN | $(per "${files[0]}") | $(per "${files[1]}") | $(per "${files[2]}") |"
