#!/usr/bin/env bash
# Installs the pinned MinIO that the S3 tests start (internal/testenv/minio.go
# runs it on a free port, once per test binary). Install only: nothing is
# started here.
#
# The binary goes to the project's tools directory, $JETTY_TOOLS_BIN, by
# default <user cache dir>/jetty-tools/bin (the same default the tests use),
# so it is built once per machine. JETTY_MINIO_BIN points the tests at
# another binary (then nothing is installed).
set -euo pipefail

VERSION=v0.0.0-20260212201848-7aac2a2c5b7c # keep in step with testenv.MinIOVersion

log() { printf 'minio: %s\n' "$*" >&2; }

if [ -n "${JETTY_MINIO_BIN:-}" ]; then
	if [ -x "$JETTY_MINIO_BIN" ]; then
		log "using JETTY_MINIO_BIN=$JETTY_MINIO_BIN"
		exit 0
	fi
	log "JETTY_MINIO_BIN=$JETTY_MINIO_BIN is not an executable"
	exit 1
fi

if [ -z "${JETTY_TOOLS_BIN:-}" ]; then
	case "$(uname -s)" in
	Darwin) cache="$HOME/Library/Caches" ;;
	*) cache="${XDG_CACHE_HOME:-$HOME/.cache}" ;;
	esac
	JETTY_TOOLS_BIN="$cache/jetty-tools/bin"
fi
bin="$JETTY_TOOLS_BIN/minio"

if [ -x "$bin" ]; then
	have=$(go version -m "$bin" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/minio/minio" { print $3 }')
	if [ "$have" = "$VERSION" ]; then
		log "MinIO $VERSION is installed at $bin"
		exit 0
	fi
	log "$bin is MinIO ${have:-of unknown version}, want $VERSION: reinstalling"
fi

command -v go >/dev/null 2>&1 || { log "go is not on PATH; cannot install MinIO"; exit 1; }
log "installing MinIO $VERSION into $JETTY_TOOLS_BIN with go install (the first build takes several minutes)"
mkdir -p "$JETTY_TOOLS_BIN"
GOBIN="$JETTY_TOOLS_BIN" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$VERSION"
log "installed $bin"
