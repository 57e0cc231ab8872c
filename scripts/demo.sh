#!/usr/bin/env bash
# The main job on the embedded default, end to end: start a dev server
# (SQLite + files in a temporary directory), log in, upload a sample file
# with JettySpeed through two edge relays (progress bar when this is a
# terminal), list it, download it, verify it byte for byte, log out, stop
# the relays and the server. Nothing outside a
# temporary directory is touched (XDG dirs point into it).
set -euo pipefail

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

work=$(mktemp -d)
server_pid=""
relay_pids=()
cleanup() {
	for p in "${relay_pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

export XDG_CONFIG_HOME="$work/config" XDG_STATE_HOME="$work/state" XDG_DATA_HOME="$work/data"
unset JETTY_SERVER JETTY_API_KEY JETTY_API_SECRET

say "building jetty"
go build -o "$work/jetty" ./cmd/jetty
jetty="$work/jetty"

say "starting a dev server (SQLite + local files in $work)"
"$jetty" server --dev --listen 127.0.0.1:0 --data-dir "$work/server" >"$work/banner.txt" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
	grep -q "Press Ctrl-C" "$work/banner.txt" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
	sleep 0.1
done
server=$(sed -n 's/^  export JETTY_SERVER=//p' "$work/banner.txt")
key=$(sed -n 's/^  export JETTY_API_KEY=//p' "$work/banner.txt")
secret=$(sed -n 's/^  export JETTY_API_SECRET=//p' "$work/banner.txt")
echo "server: $server"

say "jetty login (credentials from the dev banner, read from stdin)"
printf '%s:%s\n' "$key" "$secret" | "$jetty" login --server "$server" --with-token

say "jetty whoami"
"$jetty" whoami

say "starting two edge relays (jetty edge) that forward chunks to the server"
JETTY_EDGE_SECRET=$(sed -n 's/^  export JETTY_EDGE_SECRET=\([^ ]*\).*/\1/p' "$work/banner.txt")
export JETTY_EDGE_SECRET
for loc in fra ams; do
	"$jetty" edge --origin "$server" --listen 127.0.0.1:0 --location "$loc" --id "edge_$loc" 2>"$work/edge_$loc.log" &
	relay_pids+=($!)
done
for loc in fra ams; do
	for _ in $(seq 1 100); do
		grep -q "relay serving" "$work/edge_$loc.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q "relay serving" "$work/edge_$loc.log" || { cat "$work/edge_$loc.log" >&2; exit 1; }
done

say "jetty edges (candidates, measured latency, weights)"
"$jetty" edges

say "making a 96 MiB sample file"
head -c $((96 << 20)) /dev/urandom >"$work/sample.bin"
want=$(sha256sum "$work/sample.bin" | cut -d' ' -f1)

say "jetty upload sample.bin (JettySpeed: chunked, parallel, verified)"
"$jetty" upload "$work/sample.bin" --json >"$work/upload.json"
id=$(sed -n 's/.*"asset": *{"id": *"\([^"]*\)".*/\1/p' "$work/upload.json" | head -n1)
cat "$work/upload.json"

say "jetty ls"
"$jetty" ls

say "jetty download $id"
"$jetty" download "$id" -o "$work/downloaded.bin"
got=$(sha256sum "$work/downloaded.bin" | cut -d' ' -f1)

say "verifying"
echo "uploaded   $want"
echo "downloaded $got"
[ "$want" = "$got" ] || { echo "MISMATCH" >&2; exit 1; }
echo "identical"

say "jetty quota"
"$jetty" quota

say "jetty logout and stopping the relays and the server"
"$jetty" logout
for p in "${relay_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
relay_pids=()
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
echo "demo finished: upload, download and verification succeeded"
