#!/usr/bin/env bash
# `make console`: a dev server with the operator console on, seeded with
# the demo's data, left running until Ctrl-C. It starts `jetty server
# --dev` (SQLite + files in a temporary directory) with a generated
# JETTY_CONSOLE_TOKEN (printed once, below), three edge relays (one of
# them then killed, so the Edges page shows a relay going down), uploads
# the demo's files through the relays (one of them twice, deduplicated),
# provisions accounts of several tiers through the partner API (one call
# refused, one account suspended), and prints the console's URL and the
# token. Nothing outside a temporary directory is touched.
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
trap 'exit 0' INT TERM

export XDG_CONFIG_HOME="$work/config" XDG_STATE_HOME="$work/state" XDG_DATA_HOME="$work/data"
unset JETTY_SERVER JETTY_API_KEY JETTY_API_SECRET

say "building jetty"
go build -o "$work/jetty" ./cmd/jetty
jetty="$work/jetty"

token="console_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

say "starting a dev server with the console on (SQLite + local files in $work)"
# Jobs every 5 s: the usage roll-up (costs) catches up with the seeding at once.
JETTY_CONSOLE_TOKEN="$token" JETTY_JOBS_INTERVAL=5s \
	"$jetty" server --dev --listen "${CONSOLE_LISTEN:-127.0.0.1:0}" --data-dir "$work/server" >"$work/banner.txt" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
	grep -q "Press Ctrl-C" "$work/banner.txt" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
	sleep 0.1
done
server=$(sed -n 's/^  export JETTY_SERVER=//p' "$work/banner.txt")
partner=$(sed -n 's/^  export AGENTCACHE_WEBHOOK_SECRET=//p' "$work/banner.txt")
JETTY_EDGE_SECRET=$(sed -n 's/^  export JETTY_EDGE_SECRET=\([^ ]*\).*/\1/p' "$work/banner.txt")
export JETTY_EDGE_SECRET
demo_key=$(sed -n 's/^  export JETTY_API_KEY=//p' "$work/banner.txt")
demo_secret=$(sed -n 's/^  export JETTY_API_SECRET=//p' "$work/banner.txt")

say "starting edge relays in Frankfurt, Amsterdam, Tokyo and Singapore"
for loc in fra ams nrt sin; do
	"$jetty" edge --origin "$server" --listen 127.0.0.1:0 --location "$loc" --id "edge_$loc" --heartbeat 2s 2>"$work/edge_$loc.log" &
	relay_pids+=($!)
done
for loc in fra ams nrt sin; do
	for _ in $(seq 1 100); do
		grep -q "relay serving" "$work/edge_$loc.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q "relay serving" "$work/edge_$loc.log" || { cat "$work/edge_$loc.log" >&2; exit 1; }
done
# Singapore's relay dies without deregistering: the console shows it
# stale, then down.
kill -9 "${relay_pids[3]}"
wait "${relay_pids[3]}" 2>/dev/null || true
unset 'relay_pids[3]'

provision() { # user tier → "key:secret" (empty when refused)
	curl -sS -X POST "$server/api/agentcache/provision" -H "Authorization: Bearer $partner" -H "Content-Type: application/json" \
		-d "{\"agentcache_user_id\":\"$1\",\"agentcache_email\":\"$1@example.com\",\"tier\":\"$2\"}" >"$work/provision.json" || true
	key=$(sed -n 's/.*"api_key": *"\([^"]*\)".*/\1/p' "$work/provision.json")
	secret=$(sed -n 's/.*"api_secret": *"\([^"]*\)".*/\1/p' "$work/provision.json")
	[ -n "$key" ] && echo "$key:$secret" || true
}
upload() { # key:secret file...
	local creds=$1
	shift
	JETTY_SERVER="$server" JETTY_API_KEY="${creds%%:*}" JETTY_API_SECRET="${creds#*:}" "$jetty" upload "$@" >/dev/null
}

say "uploading the demo's files (a 48 MiB sample through the relays, the sample again under another name, a note)"
head -c $((48 << 20)) /dev/urandom >"$work/sample.bin"
cp "$work/sample.bin" "$work/sample-copy.bin"
echo "Hello JettyThunder!" >"$work/hello.txt"
upload "$demo_key:$demo_secret" "$work/sample.bin"
upload "$demo_key:$demo_secret" "$work/sample-copy.bin" "$work/hello.txt"

say "provisioning accounts of several tiers through the partner API"
for u in usr_ada:starter usr_grace:pro usr_linus:business usr_ken:free usr_barbara:enterprise usr_margaret:pro; do
	creds=$(provision "${u%%:*}" "${u#*:}")
	case "${u%%:*}" in
	usr_grace) head -c $((12 << 20)) /dev/urandom >"$work/grace.bin"; upload "$creds" "$work/grace.bin" ;;
	usr_linus) head -c $((30 << 20)) /dev/urandom >"$work/linus.bin"; upload "$creds" "$work/linus.bin" ;;
	usr_ada) head -c $((3 << 20)) /dev/urandom >"$work/ada.bin"; upload "$creds" "$work/ada.bin" ;;
	esac
done
provision usr_ada starter >/dev/null # refused: the user has an account (409)
curl -sS -o /dev/null -X POST "$server/api/agentcache/suspend" -H "Authorization: Bearer $partner" -H "Content-Type: application/json" \
	-d '{"agentcache_user_id":"usr_margaret"}'

cat <<MSG

The operator console is running:

  open    $server/console/
  token   $token

Sign in with the token (shown this once; it lives only as long as this
run). The overview's costs fill in within a few seconds (the usage
roll-up runs every 5 s here). Press Ctrl-C to stop the server and the
relays and remove the data.
MSG
wait "$server_pid"
