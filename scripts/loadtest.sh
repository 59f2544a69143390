#!/usr/bin/env bash
# Load test of `tokengate serve` (issue #4), on 127.0.0.1 only.
#
#   scripts/loadtest.sh
#
# What it does, in one run against one server process:
#   1. builds `tokengate` and `examples/loadtest_idp.rs` (release);
#   2. starts loadtest_idp: a signing key, a JWKS on 127.0.0.1, $LOADTEST_TOKENS
#      distinct tokens in a file and a config trusting that JWKS;
#   3. starts `tokengate serve --config` pinned to $LOADTEST_SERVER_CPUS and
#      drives it with wrk pinned to $LOADTEST_CLIENT_CPUS (one wrk thread):
#        healthz   GET /healthz                     (the HTTP floor, no auth)
#        repeated  one token on every request        (verified-token cache hits)
#        distinct  the next token from the file each time (signature checks)
#      each at $LOADTEST_LOW_CONNECTIONS and at $LOADTEST_CONNECTIONS
#      connections; the distinct runs walk the file from where the last one
#      stopped, until every minted token has been sent at least once;
#   4. reads VmRSS/VmHWM of the server from /proc after each phase;
#   5. prints a Markdown table and fails if any request errored (socket
#      errors, non-2xx) or if fewer than $LOADTEST_TOKENS distinct tokens
#      were validated.
#
# Environment (defaults in brackets):
#   LOADTEST_ALG               ES256 | RS256 | EdDSA [ES256]
#   LOADTEST_TOKENS            distinct tokens to mint [100000]
#   LOADTEST_DURATION          seconds per healthz/repeated run [10]
#   LOADTEST_CONNECTIONS       high concurrency [1000]
#   LOADTEST_LOW_CONNECTIONS   low concurrency [50]
#   LOADTEST_SERVER_CPUS       taskset list for the server [1]
#   LOADTEST_CLIENT_CPUS       taskset list for wrk [0]
#   TOKENGATE_LOG              passed to the server [info: one log line per decision, to a file]
#   KEEP_LOADTEST_ROOT=1       keep the scratch directory (tokens, logs, wrk output)
# Needs wrk (apt-get install wrk; installed automatically when root) and curl.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ALG="${LOADTEST_ALG:-ES256}"
COUNT="${LOADTEST_TOKENS:-100000}"
DURATION="${LOADTEST_DURATION:-10}"
HIGH="${LOADTEST_CONNECTIONS:-1000}"
LOW="${LOADTEST_LOW_CONNECTIONS:-50}"
SERVER_CPUS="${LOADTEST_SERVER_CPUS:-1}"
CLIENT_CPUS="${LOADTEST_CLIENT_CPUS:-0}"

say() { echo "loadtest: $*" >&2; }
die() { say "$*"; exit 2; }

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    say "installing wrk"
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
  else
    die "wrk is needed (apt-get install wrk)"
  fi
fi
command -v curl >/dev/null || die "curl is needed"
# 1000 client sockets plus 1000 server sockets, with room to spare.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((HIGH + 100)) ] || die "ulimit -n is $(ulimit -n): too low for $HIGH connections"

say "building (release)"
(cd "$REPO" && cargo build --release --quiet --bin tokengate --example loadtest_idp)
BIN="$REPO/target/release/tokengate"
IDP="$REPO/target/release/examples/loadtest_idp"

ROOT="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-loadtest.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_LOADTEST_ROOT:-}" = 1 ]; then say "kept $ROOT"; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT

say "minting $COUNT $ALG tokens"
"$IDP" --dir "$ROOT" --count "$COUNT" --alg "$ALG" 2>"$ROOT/idp.log" &
PIDS+=($!)
for _ in $(seq 1 1200); do [ -f "$ROOT/ready" ] && break; sleep 0.5; done
[ -f "$ROOT/ready" ] || die "loadtest_idp did not start: $(cat "$ROOT/idp.log")"

taskset -c "$SERVER_CPUS" "$BIN" serve --config "$ROOT/config.yaml" --listen 127.0.0.1:0 \
  >"$ROOT/serve.out" 2>"$ROOT/serve.log" &
SERVER=$!
PIDS+=("$SERVER")
ADDR=""
for _ in $(seq 1 100); do
  ADDR="$(sed -n 's#^tokengate listening on http://##p' "$ROOT/serve.out" | head -1)"
  [ -n "$ADDR" ] && break
  sleep 0.1
done
[ -n "$ADDR" ] || die "tokengate serve did not start: $(cat "$ROOT/serve.log")"
URL="http://$ADDR"

REPEAT="$(head -1 "$ROOT/repeat.txt")"
status="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $REPEAT" "$URL/auth")"
[ "$status" = 200 ] || die "a valid token got $status: $(tail -5 "$ROOT/serve.log")"

mem() { # "VmRSS VmHWM" in MiB
  awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%.1f %.1f", r/1024, h/1024}' "/proc/$SERVER/status"
}
read -r rss0 hwm0 <<<"$(mem)"

ROWS=()
FAILED=0
SENT=0 # distinct tokens used so far; each distinct run starts where the last stopped
# run NAME CONNECTIONS SECONDS [wrk args...]
run() {
  local name=$1 conns=$2 secs=$3
  shift 3
  local out="$ROOT/wrk-$name-$conns.txt"
  taskset -c "$CLIENT_CPUS" wrk -t 1 -c "$conns" -d "${secs}s" --timeout 10s --latency "$@" >"$out" 2>&1 || {
    cat "$out" >&2
    die "wrk failed"
  }
  local rps p50 p99 total sock non2xx
  rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")"
  p50="$(awk '$1=="50%" {print $2}' "$out")"
  p99="$(awk '$1=="99%" {print $2}' "$out")"
  total="$(awk '/requests in/ {print $1}' "$out")"
  sock="$(awk -F'[ ,]+' '/Socket errors/ {print $5+$7+$9+$11}' "$out")"
  non2xx="$(awk '/Non-2xx/ {print $5}' "$out")"
  sock="${sock:-0}"
  non2xx="${non2xx:-0}"
  if [ "$sock" != 0 ] || [ "$non2xx" != 0 ]; then FAILED=1; fi
  read -r rss hwm <<<"$(mem)"
  ROWS+=("| $name | $conns | $total | $rps | $p50 | $p99 | $sock / $non2xx | $rss / $hwm |")
  LAST_TOTAL=$total
  say "$name c=$conns: $rps req/s, p50 $p50, p99 $p99, errors $sock/$non2xx, RSS/HWM $rss/$hwm MiB"
}

# Distinct tokens: each run starts in the file where the previous one stopped;
# runs repeat until $SENT reaches SHARE. Only past the end of the file would a
# token come round again (by then long evicted from the 10,000-entry cache).
distinct() {
  local conns=$1 share=$2
  run distinct "$conns" "$DURATION" -s "$REPO/scripts/loadtest_tokens.lua" "$URL/auth" -- "$ROOT/tokens.txt" "$SENT"
  SENT=$((SENT + LAST_TOTAL))
  while [ "$SENT" -lt "$share" ]; do
    run distinct "$conns" "$DURATION" -s "$REPO/scripts/loadtest_tokens.lua" "$URL/auth" -- "$ROOT/tokens.txt" "$SENT"
    SENT=$((SENT + LAST_TOTAL))
  done
}

say "server $URL (pid $SERVER, cpus $SERVER_CPUS), wrk on cpus $CLIENT_CPUS, ${DURATION}s per run"
for conns in "$LOW" "$HIGH"; do
  run healthz "$conns" "$DURATION" "$URL/healthz"
  run repeated "$conns" "$DURATION" -H "Authorization: Bearer $REPEAT" -H "X-Forwarded-Uri: /v1/models" -H "X-Forwarded-Method: GET" "$URL/auth"
done
distinct "$LOW" 0
distinct "$HIGH" "$COUNT"

allowed="$(curl -s "$URL/metrics" | awk '/^tokengate_decisions_total/ && /outcome="allow/ {s+=$2} END {printf "%.0f", s}')"
read -r rss hwm <<<"$(mem)"
{
  echo
  echo "tokengate serve load test: $ALG, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), server on cpu $SERVER_CPUS, wrk on cpu $CLIENT_CPUS"
  echo
  echo "| run | connections | requests | req/s | p50 | p99 | errors (socket / non-2xx) | server VmRSS / VmHWM MiB |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| (idle, after warm-up) | | | | | | | $rss0 / $hwm0 |"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Distinct-token requests: $SENT over a file of $COUNT tokens (past $COUNT a token comes round again, long evicted); allow decisions in /metrics, all runs: ${allowed:-?}; server log level: ${TOKENGATE_LOG:-info}."
  echo "Server memory at the end: VmRSS $rss MiB, VmHWM $hwm MiB."
} | tee "$ROOT/summary.md"

if [ "$FAILED" != 0 ]; then die "some requests failed (see the errors column)"; fi
if [ "$SENT" -lt "$COUNT" ]; then die "only $SENT distinct tokens were sent"; fi
