#!/usr/bin/env bash
# The main job on the embedded default, end to end: start a dev server
# (SQLite + files in a temporary directory), log in, upload a sample file
# with JettySpeed (progress bar when this is a terminal), list it, download
# it, verify it byte for byte, log out, stop the server. Nothing outside a
# temporary directory is touched (XDG dirs point into it).
set -euo pipefail

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

work=$(mktemp -d)
server_pid=""
cleanup() {
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

say "making a 96 MiB sample file"
head -c $((96 << 20)) /dev/urandom >"$work/sample.bin"
want=$(sha256sum "$work/sample.bin" | cut -d' ' -f1)

say "jetty upload sample.bin (JettySpeed: chunked, parallel, verified)"
"$jetty" upload "$work/sample.bin" --json >"$work/upload.json"
id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$work/upload.json" | head -n1)
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

say "jetty logout and stopping the server"
"$jetty" logout
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
echo "demo finished: upload, download and verification succeeded"
