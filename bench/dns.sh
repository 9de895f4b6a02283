#!/usr/bin/env bash
# bench/dns.sh: dnsguard (policy on) against CoreDNS (forward + cache) in the
# same run, both in front of the same local authoritative upstream, loaded
# with dnsperf. Prints a markdown table of QPS, latency at a fixed rate,
# queries per CPU-second and RSS, with dnsguard/CoreDNS ratios.
#
#   bench/dns.sh                 # defaults below; about 2 minutes once built
#   DURATION=30 bench/dns.sh     # longer throughput runs
#
# Installs what it needs: dnsperf from Debian (apt-get), CoreDNS with
# `go install` at a pinned version (about 7 minutes the first time).
# Workloads:
#   hit     100 names asked over and over (after one warm-up pass): the
#           cache-hit path.
#   unique  every query a new name (u<N>.bench.example): the cache-miss
#           path, forwarding to the upstream; also shows memory stays bounded.
# Each resolver is pinned to its own CPU (SERVER_CPU); dnsperf and the
# upstream share the other (LOAD_CPU). QPS swings ±20% between runs on a
# shared machine: compare the ratios, and queries per CPU-second.
set -euo pipefail

COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
DURATION=${DURATION:-15}      # seconds per throughput run
LAT_DURATION=${LAT_DURATION:-5}
LAT_QPS=${LAT_QPS:-5000}      # fixed offered load of the cache-hit latency runs
LAT_QPS_UNIQUE=${LAT_QPS_UNIQUE:-1000} # ... and of the unique-name ones (below both's capacity)
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-200}
RULES=${RULES:-2000}
UNIQUE_NAMES=${UNIQUE_NAMES:-1500000}
ROUNDS=${ROUNDS:-3}           # each pair runs ROUNDS times, order alternating; medians are reported
AUTH_PORT=${AUTH_PORT:-5390}
DNSGUARD_PORT=${DNSGUARD_PORT:-5391}
COREDNS_PORT=${COREDNS_PORT:-5392}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/egressguard-dnsbench.XXXXXX)}
mkdir -p "$WORK"
log() { echo "[dns.sh] $*" >&2; }

# --- tools ---------------------------------------------------------------
if ! command -v dnsperf >/dev/null 2>&1 || ! command -v dig >/dev/null 2>&1; then
	log "installing dnsperf and dnsutils from Debian"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf dnsutils >/dev/null
fi
GOBIN_DIR=$(go env GOBIN)
[ -n "$GOBIN_DIR" ] || GOBIN_DIR=$(go env GOPATH)/bin
COREDNS="$GOBIN_DIR/coredns"
have_version=$("$COREDNS" -version 2>/dev/null || true)
if ! [ -x "$COREDNS" ] || [[ $have_version != *"CoreDNS-${COREDNS_VERSION#v}"* ]]; then
	log "building CoreDNS $COREDNS_VERSION with go install (several minutes)"
	GOFLAGS=-buildvcs=false go install "github.com/coredns/coredns@$COREDNS_VERSION"
fi
log "building the benchmark helper"
(cd "$ROOT" && go build -o "$WORK/benchsrv" ./bench/dns/benchsrv)

# taskset execs the command, so $! of a backgrounded "${PIN_SERVER[@]}" cmd
# is the server's own PID (its CPU time and RSS are read from /proc).
if [ "$(nproc)" -ge 2 ]; then
	SERVER_CPU=${SERVER_CPU:-1}
	LOAD_CPU=${LOAD_CPU:-0}
	PIN_SERVER=(taskset -c "$SERVER_CPU")
	PIN_LOAD=(taskset -c "$LOAD_CPU")
else
	PIN_SERVER=(env)
	PIN_LOAD=(env)
fi

# --- processes -----------------------------------------------------------
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

wait_dns() { # port
	for _ in $(seq 1 100); do
		if dig +time=1 +tries=1 +short @127.0.0.1 -p "$1" ready.bench.example A >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	log "nothing answers on port $1"; return 1
}

"${PIN_LOAD[@]}" "$WORK/benchsrv" auth -listen "127.0.0.1:$AUTH_PORT" >"$WORK/auth.log" 2>&1 &
PIDS+=($!)
wait_dns "$AUTH_PORT"

cat >"$WORK/Corefile" <<EOF
.:$COREDNS_PORT {
    bind 127.0.0.1
    forward . 127.0.0.1:$AUTH_PORT
    cache 3600
}
EOF
"${PIN_SERVER[@]}" "$COREDNS" -conf "$WORK/Corefile" >"$WORK/coredns.log" 2>&1 &
COREDNS_PID=$!
PIDS+=($COREDNS_PID)
"${PIN_SERVER[@]}" "$WORK/benchsrv" dnsguard -listen "127.0.0.1:$DNSGUARD_PORT" -upstream "127.0.0.1:$AUTH_PORT" -rules "$RULES" >"$WORK/dnsguard.log" 2>&1 &
DNSGUARD_PID=$!
PIDS+=($DNSGUARD_PID)
wait_dns "$COREDNS_PORT"
wait_dns "$DNSGUARD_PORT"

# --- query files ---------------------------------------------------------
for i in $(seq 0 99); do echo "host$i.bench.example A"; done >"$WORK/hit.txt"
awk -v n="$UNIQUE_NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "u%d.bench.example A\n", i }' >"$WORK/unique-coredns.txt"
sed 's/^u/g/' "$WORK/unique-coredns.txt" >"$WORK/unique-dnsguard.txt"
awk 'BEGIN { for (i = 0; i < 200000; i++) printf "lat%d.bench.example A\n", i }' >"$WORK/lat-unique-coredns.txt"
sed 's/^lat/mat/' "$WORK/lat-unique-coredns.txt" >"$WORK/lat-unique-dnsguard.txt"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

declare -A R
# run_one TARGET PORT PID WORKLOAD ROUND: one throughput run and one latency
# run; every metric is appended to its list (medians are reported).
run_one() {
	local target=$1 port=$2 pid=$3 workload=$4 round=$5 file lat_file
	case $workload in
	hit)
		file="$WORK/hit.txt"
		lat_file="$WORK/hit.txt"
		"${PIN_LOAD[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$file" -n 1 >/dev/null 2>&1 # warm the cache
		;;
	unique)
		# Every round asks names no earlier round asked.
		file="$WORK/unique-$target-$round.txt"
		lat_file="$WORK/lat-unique-$target-$round.txt"
		sed "s/^/r$round-/" "$WORK/unique-$target.txt" >"$file"
		sed "s/^/r$round-/" "$WORK/lat-unique-$target.txt" >"$lat_file"
		;;
	esac
	local rate=$LAT_QPS
	[ "$workload" = unique ] && rate=$LAT_QPS_UNIQUE
	local c0 c1 out
	c0=$(cpu_ticks "$pid")
	out=$("${PIN_LOAD[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" 2>&1)
	c1=$(cpu_ticks "$pid")
	echo "$out" >"$WORK/dnsperf-$target-$workload-$round.txt"
	local completed qps lost qpcs rss hwm p50 p99
	completed=$(echo "$out" | awk '/Queries completed:/ { print $3 }')
	lost=$(echo "$out" | awk '/Queries lost:/ { print $3 }')
	qps=$(printf "%.0f" "$(echo "$out" | awk '/Queries per second:/ { print $4 }')")
	qpcs=$(awk -v q="$completed" -v c=$((c1 - c0)) -v t="$TCK" 'BEGIN { if (c == 0) print "n/a"; else printf "%.0f", q / (c / t) }')
	rss=$(rss_kib "$pid" VmRSS)
	hwm=$(rss_kib "$pid" VmHWM)
	# Latency at a fixed offered load, same for both.
	"${PIN_LOAD[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$lat_file" -l "$LAT_DURATION" -Q "$rate" -c "$CLIENTS" -v 2>/dev/null |
		awk '$1 == ">" { print $NF * 1000000 }' | sort -n >"$WORK/lat-$target-$workload-$round.txt"
	p50=$(awk '{ a[NR] = $1 } END { if (NR) printf "%.0f", a[int(NR * 0.50) + 1] }' "$WORK/lat-$target-$workload-$round.txt")
	p99=$(awk '{ a[NR] = $1 } END { if (NR) printf "%.0f", a[int(NR * 0.99) + 1] }' "$WORK/lat-$target-$workload-$round.txt")
	log "round $round $target $workload: $qps qps, $qpcs q/CPU-s, p50 $p50 µs, p99 $p99 µs, RSS $rss KiB"
	for m in qps qpcs p50 p99 rss hwm lost; do
		R[$target,$workload,$m]="${R[$target,$workload,$m]:-} ${!m}"
	done
}

median() { # values...
	printf '%s\n' "$@" | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

for workload in hit unique; do
	for round in $(seq 1 "$ROUNDS"); do
		if [ $((round % 2)) -eq 1 ]; then
			run_one coredns "$COREDNS_PORT" "$COREDNS_PID" "$workload" "$round"
			run_one dnsguard "$DNSGUARD_PORT" "$DNSGUARD_PID" "$workload" "$round"
		else
			run_one dnsguard "$DNSGUARD_PORT" "$DNSGUARD_PID" "$workload" "$round"
			run_one coredns "$COREDNS_PORT" "$COREDNS_PID" "$workload" "$round"
		fi
	done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "n/a") print "n/a"; else printf "%.2f×", a / b }'; }

echo
echo "Median of $ROUNDS rounds (order alternating); RSS is read after each round."
echo "dnsperf: $DURATION s per throughput run, $CLIENTS clients, $OUTSTANDING outstanding; latency at a fixed rate ($LAT_QPS qps hit, $LAT_QPS_UNIQUE qps unique) for $LAT_DURATION s."
echo "Machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end of the run."
echo "dnsguard enforces a plan of $RULES rules; CoreDNS $COREDNS_VERSION runs forward + cache. Both pinned to CPU ${SERVER_CPU:-any}."
echo
echo "| workload | metric | CoreDNS | dnsguard | dnsguard / CoreDNS |"
echo "|---|---|---|---|---|"
for workload in hit unique; do
	for metric in qps qpcs p50 p99 rss hwm lost; do
		case $metric in
		qps) label="queries/s" ;;
		qpcs) label="queries per CPU-second" ;;
		p50) label="p50 latency at a fixed rate (µs)" ;;
		p99) label="p99 latency at a fixed rate (µs)" ;;
		rss) label="RSS after the workload (KiB)" ;;
		hwm) label="peak RSS since start (KiB)" ;;
		lost) label="queries lost per run" ;;
		esac
		# shellcheck disable=SC2086 # word splitting of the value lists is wanted
		a=$(median ${R[coredns,$workload,$metric]:-})
		# shellcheck disable=SC2086
		b=$(median ${R[dnsguard,$workload,$metric]:-})
		echo "| $workload | $label | $a | $b | $(ratio "$b" "$a") |"
	done
done
echo
log "raw dnsperf output in $WORK"
