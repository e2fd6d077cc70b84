#!/usr/bin/env bash
# Starts `paycenter serve` on a data directory whose chain checkpoint is sealed, then reports how
# long the background walk of the log below the checkpoint took (from the first 200 of /healthz
# until `paycenter_chain_verified_position` reaches the checkpoint) and the CPU the process used
# meanwhile; then stops it with SIGKILL. Nothing is appended.
#
#   scripts/measure-chain-walk.sh BINARY DATA_DIR
#
# Prints one line of JSON: {"walk_seconds", "cpu_seconds", "verified_position"}.
# `docs/benchmarks.md` quotes it on the rebuild bench's 10M log.
set -euo pipefail

binary=$1
data_dir=$2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=measure-chain-walk-admin-token
PAYCENTER_ADMIN_TOKEN=$token RUST_LOG=warn \
  "$binary" serve --data-dir "$data_dir" --listen "127.0.0.1:$port" >/dev/null 2>"$data_dir/measure-chain-walk.log" &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
health() { curl -sf "http://127.0.0.1:$port/healthz" || true; }
until [ -n "$(health)" ]; do
  kill -0 "$pid" 2>/dev/null || { echo "paycenter exited; see $data_dir/measure-chain-walk.log" >&2; exit 1; }
  sleep 0.05
done
started=$(date +%s.%N)
ticks_at_start=$(cpu_ticks)
deadline=$(( $(date +%s) + 3600 ))
while true; do
  chain=$(health | python3 -c 'import json,sys; c=json.load(sys.stdin)["components"]["chain"]; print(c.get("status"), c.get("verified_through", 0), c.get("checkpoint", 0))')
  read -r status verified checkpoint <<<"$chain"
  if [ "$status" != "verifying" ]; then break; fi
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the walk did not finish within an hour" >&2; exit 1; }
  sleep 1
done
finished=$(date +%s.%N)
ticks_at_end=$(cpu_ticks)
ticks_per_second=$(getconf CLK_TCK)
python3 -c "import json; print(json.dumps({'walk_seconds': round($finished - $started, 1), 'cpu_seconds': round(($ticks_at_end - $ticks_at_start) / $ticks_per_second, 1), 'verified_position': $verified, 'chain_status': '$status'}))"
