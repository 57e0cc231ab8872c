#!/usr/bin/env bash
# Runs the CI recipes of docs/ci.md (the fenced blocks tagged `sh ci-smoke`)
# exactly as written, in order, in one bash (-euo pipefail), against a local
# dev server, with a freshly built jetty on PATH and the dev banner's
# credentials in JETTY_SERVER / JETTY_API_KEY / JETTY_API_SECRET, as a CI
# job would have them. Fixtures: dist/app.tar.gz, dist/notes.txt, logs/.
# Everything happens in a temporary directory (XDG dirs point into it).
set -euo pipefail
cd "$(dirname "$0")/.."
doc=docs/ci.md
start=$(date +%s)

work=$(mktemp -d)
server_pid=""
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
export XDG_CONFIG_HOME="$work/config" XDG_STATE_HOME="$work/state" XDG_DATA_HOME="$work/data"
unset JETTY_SERVER JETTY_API_KEY JETTY_API_SECRET

# The recipes, as one script.
awk '/^```sh ci-smoke[[:space:]]*$/ { on = 1; n++; printf "\n# --- recipe %d\n", n; next }
     on && /^```/ { on = 0; next }
     on { print }' "$doc" >"$work/recipes.sh"
count=$(grep -c '^# --- recipe' "$work/recipes.sh" || true)
[ "$count" -gt 0 ] || { echo "ci-recipes: no \`sh ci-smoke\` blocks in $doc" >&2; exit 1; }
command -v jq >/dev/null || { echo "ci-recipes: the recipes need jq" >&2; exit 1; }

mkdir -p "$work/bin" "$work/job/dist" "$work/job/logs"
go build -o "$work/bin/jetty" ./cmd/jetty
export PATH="$work/bin:$PATH"

jetty server --dev --listen 127.0.0.1:0 --data-dir "$work/server" >"$work/banner.txt" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
	grep -q "Press Ctrl-C" "$work/banner.txt" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
	sleep 0.1
done
JETTY_SERVER=$(sed -n 's/^  export JETTY_SERVER=//p' "$work/banner.txt")
JETTY_API_KEY=$(sed -n 's/^  export JETTY_API_KEY=//p' "$work/banner.txt")
JETTY_API_SECRET=$(sed -n 's/^  export JETTY_API_SECRET=//p' "$work/banner.txt")
[ -n "$JETTY_SERVER" ] && [ -n "$JETTY_API_KEY" ] && [ -n "$JETTY_API_SECRET" ] ||
	{ echo "ci-recipes: no credentials in the dev banner:" >&2; cat "$work/banner.txt" >&2; exit 1; }
export JETTY_SERVER JETTY_API_KEY JETTY_API_SECRET

# A CI job's workspace.
head -c $((3 << 20)) /dev/urandom >"$work/job/dist/app.tar.gz"
echo "release notes" >"$work/job/dist/notes.txt"
for i in 1 2 3; do echo "log line $i" >"$work/job/logs/$i.log"; done

echo "ci-recipes: running $count recipes from $doc against $JETTY_SERVER" >&2
if ! (cd "$work/job" && bash -euo pipefail "$work/recipes.sh"); then
	echo "ci-recipes: FAIL; the script was:" >&2
	cat -n "$work/recipes.sh" >&2
	exit 1
fi
echo "ci-recipes: OK, $count recipes in $(($(date +%s) - start))s" >&2
