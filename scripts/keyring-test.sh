#!/usr/bin/env bash
# Runs the keychain tests against a real Secret Service: gnome-keyring-daemon
# under a private D-Bus session (dbus-run-session), as on a Linux desktop.
#
# Installs the Debian packages it needs (gnome-keyring, dbus, libsecret-tools
# for secret-tool) when they are missing: `apt-get update` once, then
# `apt-get install -y`. Needs root or sudo for that; nothing is installed
# when they are present. Then runs TestRealSecretService (keychain/ and
# cmd/jetty) with JETTY_SECRET_SERVICE=1, which makes those tests run
# instead of skipping, then the no-bus and hung-bus login tests (each in its
# own process: go-keyring's D-Bus library caches the session connection).
set -euo pipefail

log() { printf 'keyring-test: %s\n' "$*" >&2; }

cd "$(dirname "$0")/.."

missing=()
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v dbus-run-session >/dev/null 2>&1 || missing+=(dbus)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)

if [ ${#missing[@]} -gt 0 ]; then
	# de-duplicate
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
			log "missing ${missing[*]} and not root (no sudo): apt-get install ${missing[*]}"
			exit 1
		fi
	fi
	log "installing ${missing[*]} (apt-get update, then apt-get install -y)"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	log "gnome-keyring, dbus and libsecret-tools are installed"
fi

GO=${GO:-go}
log "running TestRealSecretService under dbus-run-session with gnome-keyring-daemon"
# The keyring daemon needs a writable home for its collections; use a
# throwaway one so a developer's own login keyring is never touched.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/data"
export JETTY_SECRET_SERVICE=1
export GO
HOME_FOR_KEYRING="$tmp/home" XDG_DATA_HOME="$tmp/data" \
	dbus-run-session -- sh -c '
	set -e
	echo -n pw | HOME="$HOME_FOR_KEYRING" gnome-keyring-daemon --unlock --components=secrets >/dev/null
	"$GO" test -race -count=1 -run TestRealSecretService -v ./keychain/ ./cmd/jetty/
'
log "running TestLoginSecretServiceNotAnswering (a private bus whose Secret Service never answers: login must give up after the timeout)"
"$GO" test -race -count=1 -run 'TestLoginSecretServiceNotAnswering|TestLoginWithoutSessionBus' -v ./cmd/jetty/
log "ok"
