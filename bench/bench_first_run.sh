#!/usr/bin/env bash
# The first `make run` on a fresh clone: seconds until the API answers, and the size of .venv.
#   bench/bench_first_run.sh [BASELINE_REF] [RUNS]
# Clones this checkout's HEAD (and BASELINE_REF, if given) into a temporary folder RUNS times (default
# 1), each with an empty pip cache, and prints one Markdown row per run; with a baseline the runs
# alternate, so both see the same machine load. Needs PostgreSQL on 127.0.0.1:5432 (the server's
# database is abtest_bench_first_run, created if missing) and a free port (PORT, default 3299).
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
BASELINE=${1:-}
RUNS=${2:-1}
PORT=${PORT:-3299}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
psql -h 127.0.0.1 -U postgres -qc 'create database abtest_bench_first_run' 2>/dev/null || true

first_run() {  # $1 = label, $2 = commit
    local dest="$WORK/$1" start pid elapsed
    rm -rf "$dest" && git clone -q "$ROOT" "$dest" && git -C "$dest" checkout -q "$2"
    start=$(date +%s.%N)
    # setsid: make and the server it starts form one process group, stopped together below.
    PIP_CACHE_DIR="$WORK/pip-cache-$1" DATABASE_URL=postgresql://postgres@127.0.0.1:5432/abtest_bench_first_run \
        setsid make -C "$dest" run PORT="$PORT" >"$WORK/$1.log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$PORT/api/v1/experiments"; do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK/$1.log"; exit 1; }
        sleep 0.5
    done
    elapsed=$(echo "$(date +%s.%N) - $start" | bc)
    kill -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '| %s | %s | %.1f | %s |\n' "$1" "$(git -C "$dest" rev-parse --short HEAD)" "$elapsed" \
        "$(du -sm "$dest/.venv" | cut -f1)"
    rm -rf "$dest" "$WORK/pip-cache-$1"
}

echo "| checkout | commit | first make run until the API answers (s) | .venv (MB) |"
echo "|---|---|---|---|"
for i in $(seq "$RUNS"); do
    first_run "head-$i" "$(git -C "$ROOT" rev-parse HEAD)"
    if [ -n "$BASELINE" ]; then first_run "baseline-$i" "$(git -C "$ROOT" rev-parse "$BASELINE")"; fi
done
