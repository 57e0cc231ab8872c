#!/usr/bin/env bash
# Throughput of the embedded default (issue 18): `jetty upload` against one
# `curl -T` PUT of a file of the same size to `jetty server --dev` (SQLite +
# files) over loopback, each on a fresh server and data directory, servers
# built from the given binaries measured side by side: A B A B ... so the
# load of a shared machine falls on both alike.
#
#   scripts/bench-embedded.sh [-s SIZE_MIB] [-r ROUNDS] [-d DIR] BIN...
#
# BIN are jetty binaries (e.g. one built from main, one from this branch);
# the client is always the first one. Prints one line per run and, per
# binary, the median MiB/s of each tool and the ratio jetty / curl.
set -euo pipefail

size_mib=1024 rounds=2 dir=""
while getopts "s:r:d:" o; do
	case $o in
	s) size_mib=$OPTARG ;;
	r) rounds=$OPTARG ;;
	d) dir=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-s MiB] [-r rounds] [-d dir] BIN..." >&2; exit 2; }
bins=("$@")
client=${bins[0]}

work=${dir:-$(mktemp -d)}
mkdir -p "$work"
server_pid=""
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
	rm -rf "$work/srv" "$work/xdg"
	[ -n "$dir" ] || rm -rf "$work"
}
trap cleanup EXIT

file="$work/bench-$size_mib.bin"
if [ ! -s "$file" ] || [ "$(stat -c %s "$file")" != $((size_mib << 20)) ]; then
	head -c $((size_mib << 20)) /dev/urandom >"$file"
fi
sum=$(sha256sum "$file" | cut -d' ' -f1)

start_server() { # bin
	rm -rf "$work/srv" "$work/xdg"
	mkdir -p "$work/xdg"
	"$1" server --dev --listen 127.0.0.1:0 --data-dir "$work/srv" >"$work/banner.txt" 2>"$work/server.log" &
	server_pid=$!
	for _ in $(seq 1 300); do
		grep -q "Press Ctrl-C" "$work/banner.txt" 2>/dev/null && break
		kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
		sleep 0.1
	done
	grep -q "Press Ctrl-C" "$work/banner.txt" || { echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
	server=$(sed -n 's/^  export JETTY_SERVER=//p' "$work/banner.txt")
	key=$(sed -n 's/^  export JETTY_API_KEY=//p' "$work/banner.txt")
	secret=$(sed -n 's/^  export JETTY_API_SECRET=//p' "$work/banner.txt")
	# The demo account is "pro" (500 MiB per file): make it enterprise.
	local whsec user
	whsec=$(sed -n 's/^  export AGENTCACHE_WEBHOOK_SECRET=//p' "$work/banner.txt")
	user=$(sed -n 's/^Demo account "\([^"]*\)".*/\1/p' "$work/banner.txt")
	curl -fsS -o /dev/null -X POST "$server/api/agentcache/upgrade" -H "Authorization: Bearer $whsec" \
		-H "Content-Type: application/json" -d "{\"agentcache_user_id\":\"$user\",\"tier\":\"enterprise\"}"
}
stop_server() {
	kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
	server_pid=""
}
now() { date +%s.%N; }
mibs() { awk -v s="$size_mib" -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", s / (b - a) }'; }

declare -A results
for r in $(seq 1 "$rounds"); do
	for i in "${!bins[@]}"; do
		bin=${bins[$i]}
		sync
		start_server "$bin"
		t0=$(now)
		code=$(curl -sS -o "$work/curl.json" -w '%{http_code}' -T "$file" -X POST \
			-H "Authorization: Bearer $key" -H "X-API-Secret: $secret" \
			-H "X-Filename: curl.bin" -H "X-Content-SHA256: $sum" \
			"$server/api/storage/upload")
		t1=$(now)
		[ "${code:0:1}" = 2 ] || { echo "curl: HTTP $code: $(cat "$work/curl.json")" >&2; exit 1; }
		stop_server
		sync
		start_server "$bin"
		t2=$(now)
		XDG_CONFIG_HOME="$work/xdg" XDG_STATE_HOME="$work/xdg" XDG_DATA_HOME="$work/xdg" \
			JETTY_SERVER=$server JETTY_API_KEY=$key JETTY_API_SECRET=$secret \
			"$client" upload "$file" --no-progress --json >"$work/upload.json"
		t3=$(now)
		stop_server
		c=$(mibs "$t0" "$t1") j=$(mibs "$t2" "$t3")
		echo "round $r bin $i ($bin): curl -T $c MiB/s, jetty upload $j MiB/s, ratio $(awk -v j="$j" -v c="$c" 'BEGIN { printf "%.2f", j / c }')"
		results[$i]+="$c $j"$'\n'
	done
done
for i in "${!bins[@]}"; do
	printf '%s' "${results[$i]}" | sort -n -k1 | awk -v b="${bins[$i]}" '{ c[NR]=$1; j[NR]=$2 } END {
		n = asort(c); asort(j); m = int((n + 1) / 2)
		printf "median %s: curl -T %.1f MiB/s, jetty upload %.1f MiB/s, jetty/curl %.2f\n", b, c[m], j[m], j[m] / c[m] }'
done
