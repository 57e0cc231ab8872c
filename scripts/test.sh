#!/usr/bin/env bash
# `make test`: prepares what the tests use, then runs both test steps and
# reports both, failing if either failed. A failing package in the first
# step does not stop the second.
#
# Setup, in order (each a script of its own, also a make target):
#   scripts/services.sh   starts PostgreSQL and Redis when they are down
#   scripts/minio.sh      installs the pinned MinIO (go install) when missing
#   scripts/toxiproxy.sh  installs the pinned toxiproxy (go install) when missing
#   scripts/test-deps.sh  apt-get installs tmux, gnome-keyring, dbus,
#                         libsecret-tools, xfsprogs when missing (root or sudo)
# A setup step that fails is reported and the tests still run: the tests
# that need what it provides skip with a banner, or fail when
# JETTY_REQUIRE_SERVICES=1 (as in CI, .ci/run), which also makes the
# failed setup step fail this script.
#
# Tests:
#   1. $GO test -race -count=1 -timeout 30m $PKGS
#   2. scripts/keyring-test.sh (the keychain against a real Secret Service)
#
# GO (default go) and PKGS (default ./...) are taken from the environment,
# as the Makefile passes them. scripts/scripts_test.go runs this script
# through `make test` with stand-ins for every step.
set -uo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
PKGS=${PKGS:-./...}
export GO

log() { printf 'make test: %s\n' "$*" >&2; }

declare -a summary=()
failed=0

for step in services minio toxiproxy test-deps; do
	if "./scripts/$step.sh"; then
		summary+=("setup $step: ok")
	elif [ "${JETTY_REQUIRE_SERVICES:-}" = 1 ]; then
		summary+=("setup $step: FAILED (JETTY_REQUIRE_SERVICES=1)")
		failed=1
	else
		summary+=("setup $step: failed (tests that need it skip)")
		log "$step failed; running the tests anyway (those that need it skip; JETTY_REQUIRE_SERVICES=1 makes them fail)"
	fi
done

# record LABEL STATUS adds a test step's result to the summary.
record() {
	if [ "$2" -eq 0 ]; then
		summary+=("$1: ok")
	else
		summary+=("$1: FAILED (exit $2)")
		failed=1
	fi
}

# shellcheck disable=SC2086 # PKGS may name several packages
$GO test -race -count=1 -timeout 30m $PKGS
record "go test -race $PKGS" $?

./scripts/keyring-test.sh
record "keychain tests (scripts/keyring-test.sh)" $?

log "summary"
for line in "${summary[@]}"; do
	printf '  %s\n' "$line" >&2
done
if [ $failed -ne 0 ]; then
	log "FAILED"
	exit 1
fi
log "ok"
