#!/usr/bin/env bash
# Installs the pinned toxiproxy that the network-shaping tests start
# (internal/testenv/toxiproxy.go runs it on a free port, once per test
# binary). Install only: nothing is started here.
#
# The binary goes to the project's tools directory, $JETTY_TOOLS_BIN, by
# default <user cache dir>/jetty-tools/bin (the same default the tests use),
# as toxiproxy-server, so it is built once per machine. `go install` names
# it `server`, so it is built into a temporary GOBIN and moved into place.
# JETTY_TOXIPROXY_BIN points the tests at another binary (then nothing is
# installed).
set -euo pipefail

MODULE=github.com/Shopify/toxiproxy/v2
VERSION=v2.5.0 # keep in step with testenv.ToxiproxyVersion

log() { printf 'toxiproxy: %s\n' "$*" >&2; }

if [ -n "${JETTY_TOXIPROXY_BIN:-}" ]; then
	if [ -x "$JETTY_TOXIPROXY_BIN" ]; then
		log "using JETTY_TOXIPROXY_BIN=$JETTY_TOXIPROXY_BIN"
		exit 0
	fi
	log "JETTY_TOXIPROXY_BIN=$JETTY_TOXIPROXY_BIN is not an executable"
	exit 1
fi

if [ -z "${JETTY_TOOLS_BIN:-}" ]; then
	case "$(uname -s)" in
	Darwin) cache="$HOME/Library/Caches" ;;
	*) cache="${XDG_CACHE_HOME:-$HOME/.cache}" ;;
	esac
	JETTY_TOOLS_BIN="$cache/jetty-tools/bin"
fi
bin="$JETTY_TOOLS_BIN/toxiproxy-server"

command -v go >/dev/null 2>&1 || { log "go is not on PATH; cannot check or install toxiproxy"; exit 1; }

# installed_version prints the module version $1 was built from (empty when
# it is not a toxiproxy-server built by go).
installed_version() {
	go version -m "$1" 2>/dev/null | awk -v mod="$MODULE" '$1 == "mod" && $2 == mod { print $3 }'
}

if [ -x "$bin" ]; then
	have=$(installed_version "$bin")
	if [ "$have" = "$VERSION" ]; then
		log "toxiproxy $VERSION is installed at $bin"
		exit 0
	fi
	log "$bin is toxiproxy ${have:-of unknown version}, want $VERSION: reinstalling"
fi

log "installing toxiproxy $VERSION into $JETTY_TOOLS_BIN with go install"
mkdir -p "$JETTY_TOOLS_BIN"
# The temporary GOBIN is inside the tools directory so that the final mv is
# a rename on one file system: a concurrent run never sees half a binary.
tmp=$(mktemp -d "$JETTY_TOOLS_BIN/.toxiproxy-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$MODULE/cmd/server@$VERSION"
[ -x "$tmp/server" ] || { log "go install did not produce $tmp/server"; exit 1; }
got=$(installed_version "$tmp/server")
[ "$got" = "$VERSION" ] || { log "built binary reports version ${got:-unknown}, want $VERSION"; exit 1; }
mv -f "$tmp/server" "$bin"
log "installed $bin"
