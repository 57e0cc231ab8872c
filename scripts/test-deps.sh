#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real when they are
# missing: tmux (the progress bar on a real terminal), and gnome-keyring,
# dbus, libsecret-tools (the keychain against a real Secret Service),
# xfsprogs (mkfs.xfs: the file store's reflink clones on a loop-mounted XFS),
# haproxy (the load balancer of the scale-out test, deploy/haproxy.cfg),
# chromium (the console's browser tests, server/console).
# `apt-get update` once, then `apt-get install -y`; needs root or sudo only
# when something is missing.
set -euo pipefail
log() { printf 'test-deps: %s\n' "$*" >&2; }

missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v dbus-run-session >/dev/null 2>&1 || missing+=(dbus)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)
command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || [ -x /sbin/mkfs.xfs ] || missing+=(xfsprogs)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || [ -x /sbin/haproxy ] || missing+=(haproxy)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
	log "tmux, gnome-keyring, dbus, libsecret-tools, xfsprogs, haproxy and chromium are installed"
	exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { log "missing ${missing[*]} and not root: apt-get install ${missing[*]}"; exit 1; }
	sudo="sudo"
fi
log "installing ${missing[*]} (apt-get update, then apt-get install -y)"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
