#!/usr/bin/env bash
# Samples the resident memory of every process whose command name is `paycenter` once a second
# until the first such process ends (or `--seconds N` pass), then prints one line of JSON:
# {"samples", "rss_mb_first", "rss_mb_last", "rss_mb_max", "series_mb"} (the series: every 5th
# sample, so where the peak came is visible). Used beside the load bench
# (`docs/benchmarks.md`) to read the server's memory under load.
#
#   scripts/sample-rss.sh [--seconds N]
set -euo pipefail

max_seconds=3600
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) max_seconds=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

first="" last="" max=0 samples=0 seen=0 series=""
for _ in $(seq "$max_seconds"); do
  rss_kb=$(ps -C paycenter -o rss= 2>/dev/null | sort -n | tail -1 | tr -d ' ' || true)
  if [ -z "$rss_kb" ]; then
    if [ "$seen" = 1 ]; then break; fi
    sleep 1
    continue
  fi
  seen=1
  mb=$(( rss_kb / 1024 ))
  [ -z "$first" ] && first=$mb
  last=$mb
  [ "$mb" -gt "$max" ] && max=$mb
  if [ $(( samples % 5 )) -eq 0 ]; then series="${series:+$series, }$mb"; fi
  samples=$(( samples + 1 ))
  sleep 1
done
printf '{"samples": %d, "rss_mb_first": %s, "rss_mb_last": %s, "rss_mb_max": %d, "series_mb": [%s]}\n' \
  "$samples" "${first:-null}" "${last:-null}" "$max" "$series"
