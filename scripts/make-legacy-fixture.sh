#!/usr/bin/env bash
# Writes a small event log with the `paycenter` binary given as $1 (payments with fees and
# splits, partial and full refunds, a duplicate payment refunded automatically) into
# projections/tests/fixtures/legacy-v1/, with the balances the binary answered beside it.
# Used once, before refund shares were recorded in events, to pin how old logs replay.
set -euo pipefail
BIN=${1:?usage: make-legacy-fixture.sh path/to/paycenter}
OUT=$(cd "$(dirname "$0")/.." && pwd)/projections/tests/fixtures/legacy-v1
DATA=$(mktemp -d)
PORT=18931
P=http://127.0.0.1:$PORT
export PAYCENTER_ADMIN_TOKEN=fixture-admin-token-0123456789
export PAYCENTER_MASTER_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
export PAYCENTER_MIN_ATTEMPT_INTERVAL_MS=0
"$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT >"$DATA/stdout" 2>"$DATA/server.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf $P/healthz >/dev/null && break; sleep 0.1; done
A="Authorization: Bearer $PAYCENTER_ADMIN_TOKEN"; J="content-type: application/json"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
M=$(curl -sf -XPOST $P/v1/merchants -H "$A" -H "$J" -d '{"name":"Fixture Property"}' | field merchant_id)
CA=$(curl -sf -XPOST $P/v1/merchants/$M/channel-accounts -H "$A" -H "$J" -d '{"channel":"sandbox","params":{},"fee_rate":"0.006"}' | field channel_account_id)
CB=$(curl -sf -XPOST $P/v1/merchants/$M/channel-accounts -H "$A" -H "$J" -d '{"channel":"sandbox","params":{},"fee_rate":"0.0038"}' | field channel_account_id)
K="Authorization: Bearer $(curl -sf -XPOST $P/v1/apps -H "$A" -H "$J" -d "{\"name\":\"fixture\",\"merchant_ids\":[\"$M\"],\"notify_url\":\"http://127.0.0.1:9/hooks\"}" | field api_key)"
pay() { # order account amount splits-json
  local trade
  trade=$(curl -sf -XPOST $P/v1/payments -H "$K" -H "$J" -d "{\"merchant_id\":\"$M\",\"channel_account_id\":\"$2\",\"order_no\":\"$1\",\"amount\":\"$3\",\"currency\":\"CNY\",\"invoke_method\":\"pc\",\"subject\":\"rent\",\"splits\":$4}" | field trade_no)
  curl -sf -XPOST $P/sandbox/pay/$trade -H "$J" -d '{"outcome":"success"}' >/dev/null
  for _ in $(seq 1 100); do
    [ "$(curl -sf $P/v1/payments/$trade -H "$K" | field status)" = succeeded ] && break; sleep 0.05
  done
  echo "$trade"
}
refund() { # trade refund_no amount
  curl -sf -XPOST $P/v1/payments/$1/refunds -H "$K" -H "$J" -d "{\"refund_no\":\"$2\",\"amount\":\"$3\"}" >/dev/null
}
T1=$(pay F-1 "$CA" 100.00 '[{"receiver":"platform","amount":"5.00"},{"receiver":"owner","amount":"20.00"}]')
refund "$T1" F-1-r1 30.00
refund "$T1" F-1-r2 33.33
T2=$(pay F-2 "$CA" 77.77 '[{"receiver":"platform","amount":"7.77"}]')
refund "$T2" F-2-r1 77.77
T3=$(pay F-3 "$CB" 1234.56 '[{"receiver":"platform","amount":"12.34"},{"receiver":"owner","amount":"100.00"},{"receiver":"agent","amount":"3.21"}]')
refund "$T3" F-3-r1 0.01
refund "$T3" F-3-r2 500.00
refund "$T3" F-3-r3 99.99
T4=$(pay F-4 "$CB" 19.99 '[]')
refund "$T4" F-4-r1 9.99
# A duplicate: a second attempt of one order paid after the first (refunded automatically).
T5=$(curl -sf -XPOST $P/v1/payments -H "$K" -H "$J" -d "{\"merchant_id\":\"$M\",\"channel_account_id\":\"$CA\",\"order_no\":\"F-5\",\"amount\":\"50.00\",\"currency\":\"CNY\",\"invoke_method\":\"pc\",\"subject\":\"rent\",\"splits\":[{\"receiver\":\"owner\",\"amount\":\"10.00\"}]}" | field trade_no)
T6=$(pay F-5 "$CA" 50.00 '[{"receiver":"owner","amount":"10.00"}]')
curl -sf -XPOST $P/sandbox/pay/$T5 -H "$J" -d '{"outcome":"success","race_close":true}' >/dev/null
sleep 2
refund "$T6" F-5-r1 25.00
sleep 2
mkdir -p "$OUT"
curl -sf $P/v1/merchants/$M/balances -H "$A" | python3 -m json.tool > "$OUT/balances.json"
kill -TERM $PID; wait $PID || true
trap - EXIT
rm -f "$OUT/events.sqlite3"
sqlite3 "$DATA/events.sqlite3" ".backup '$OUT/events.sqlite3'" 2>/dev/null || cp "$DATA/events.sqlite3" "$OUT/events.sqlite3"
echo "$M" > "$OUT/merchant_id"
cat "$OUT/balances.json"
