#!/bin/bash
# The loopback load probe of docs/hosting.md on a published scoring service:
#   bench/scoring-service/probe.sh PUBLISHED_DIR MODEL DATA_DIR PORT [service arguments...]
# starts PUBLISHED_DIR/UniAD.ScoringService.dll on MODEL, sends 500 warm-up requests and then 5 rounds of 2,000 requests,
# 8 at a time (bench/scoring-service/load.py: the test PNGs under DATA_DIR), printing req/s, p50, p99, the service's
# resident set after each round, the load average, and whether any libtorch or TorchSharp file is mapped.
set -e
published=$1; model=$2; data=$3; port=$4; shift 4
here=$(cd "$(dirname "$0")" && pwd)
dotnet "$published/UniAD.ScoringService.dll" --urls "http://127.0.0.1:$port" --UniAD:ModelPath="$model" "$@" > "service-$port.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for i in $(seq 1 60); do sleep 1; curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
echo "started $(date -u +%FT%TZ), RSS $(rss) MB"
python3 "$here/load.py" "$port" 500 8 "$data"
echo "after warm-up: RSS $(rss) MB, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in 1 2 3 4 5; do
  python3 "$here/load.py" "$port" 2000 8 "$data"
  echo "round $r: RSS $(rss) MB, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "libtorch/TorchSharp files mapped: $(awk '{print $6}' "/proc/$pid/maps" | grep -ci torch || true)"
