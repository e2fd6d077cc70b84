#!/usr/bin/env bash
# Starts `paycenter serve` on a data directory and reports how long it took until /healthz
# answered 200, and the resident memory then and after `--hold-seconds` more; then stops it
# with SIGKILL (as a crash would) or SIGTERM.
#
#   scripts/measure-start.sh BINARY DATA_DIR [--sigterm] [--hold-seconds N]
#
# Prints one line of JSON: {"seconds_to_healthy", "rss_mb_at_healthy", "rss_mb_after_hold"}.
# `docs/benchmarks.md` quotes it on a log filled by the rebuild bench (PAYCENTER_BENCH_DATA_DIR).
set -euo pipefail

binary=$1
data_dir=$2
shift 2
stop_signal=KILL
hold_seconds=0
while [ $# -gt 0 ]; do
  case $1 in
    --sigterm) stop_signal=TERM ;;
    --hold-seconds) hold_seconds=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

started=$(date +%s.%N)
PAYCENTER_ADMIN_TOKEN=measure-start-admin-token RUST_LOG=warn \
  "$binary" serve --data-dir "$data_dir" --listen "127.0.0.1:$port" >/dev/null 2>"$data_dir/measure-start.log" &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT
deadline=$(( $(date +%s) + 600 ))
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "paycenter exited before it was healthy; see $data_dir/measure-start.log" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "paycenter was not healthy within 600 s" >&2
    exit 1
  fi
  sleep 0.05
done
healthy=$(date +%s.%N)
rss_at_healthy=$(rss_mb "$pid")
sleep "$hold_seconds"
rss_after_hold=$(rss_mb "$pid")
kill "-$stop_signal" "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT
python3 -c "import json,sys; print(json.dumps({'seconds_to_healthy': round($healthy - $started, 2), 'rss_mb_at_healthy': $rss_at_healthy, 'rss_mb_after_hold': $rss_after_hold}))"
