#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) in one process at low
# priority, with its dictionary, after seeding its corpus from the shapes the
# unit tests and shipped configs already hold. Corpus, artifacts and the log
# (fuzz-0.log, which libFuzzer writes with -jobs) stay out of git.
#   fuzz/run.sh path_canonical 600
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
corpus=corpus/$target
mkdir -p "$corpus"

# Seed files are named by their content's hash: seeding again adds nothing.
seed() {
    local file
    file=$(mktemp)
    cat >"$file"
    mv "$file" "$corpus/seed-$(sha1sum "$file" | cut -c1-16)"
}
seed_lines() { # one seed per line, after an optional prefix byte (in printf %b form)
    local prefix=$1 line
    while IFS= read -r line; do printf "%b%s" "$prefix" "$line" | seed; done
}

case $target in
    run_yaml_load | config_load)
        # Mode byte 0: the text as it is (YAML).
        for file in ../config/*.yaml; do { printf '\0'; cat "$file"; } | seed; done
        ;;
    path_canonical)
        seed_lines '' <<'EOF'
/v1/models
//v1//models//
/files/my%20doc.txt
/caf%C3%A9
/100%25
/public/..;/admin/users
/public/%252e%252e/admin
/public/%2e%2e/admin
/public%2fadmin
/public%5cadmin
/exact.
/exact%20
/public/%EF%BC%8E%EF%BC%8E/admin
/a/..%E2%80%8B/admin
/v1/files%CC%81
/v1%3F
https://h/v1/models?x=1
/v1/models?a=1&b=%FF
EOF
        ;;
    original_request)
        # Mode byte: proxy (nginx, traefik, caddy, envoy, auto) + 5 with an Envoy path prefix.
        printf '\0GET /auth\nx-original-uri: /v1/models?a=1\nx-original-method: GET\nx-forwarded-user: jos\xc3\xa9' | seed
        printf '\1GET /\nx-forwarded-uri: /v1/x\nx-forwarded-method: POST\nx-forwarded-host: h\nx-forwarded-proto: https' | seed
        printf '\3POST /v1/chat?a=b\nx-forwarded-groups: a,\xe9quipe\nx-forwarded-groups: b' | seed
        printf '\4GET /\nx-original-uri: /a\nx-original-method: GET\nx-forwarded-uri: /a\nx-forwarded-method: GET' | seed
        printf '\11GET /ext_authz/v1/models\nx-http-method-override: DELETE\nhost: h' | seed
        ;;
esac

dict=()
if [[ -f dict/$target.dict ]]; then dict=(-dict="dict/$target.dict"); fi
export RUSTC_BOOTSTRAP=1
nice -n 10 cargo fuzz build "$target"
# -jobs=1: one fuzzing process beside this one; libFuzzer writes its output to fuzz-0.log.
exec nice -n 10 cargo fuzz run "$target" "$corpus" -- -jobs=1 -max_total_time="$seconds" \
    -print_final_stats=1 "${dict[@]}"
