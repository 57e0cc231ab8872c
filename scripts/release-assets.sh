#!/usr/bin/env bash
# Generates what the release archives and packages ship besides the binary:
# shell completions (bash, zsh, fish, powershell) and gzipped man pages, in
# dist-assets/. goreleaser.yaml runs it as a before hook; it is safe to run
# by hand. The generator is the host build of ./cmd/jetty (the scripts and
# pages are the same for every target OS).
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist-assets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

CGO_ENABLED=0 go build -o "$tmp/jetty" ./cmd/jetty
rm -rf "$out"
mkdir -p "$out/completions" "$out/man"

"$tmp/jetty" completion bash >"$out/completions/jetty.bash"
"$tmp/jetty" completion zsh >"$out/completions/_jetty"
"$tmp/jetty" completion fish >"$out/completions/jetty.fish"
"$tmp/jetty" completion powershell >"$out/completions/jetty.ps1"

"$tmp/jetty" gen-docs --markdown "" --man "$out/man" 2>/dev/null
gzip -9 -n "$out"/man/*.1

for f in "$out"/completions/* "$out"/man/*; do
	[ -s "$f" ] || { echo "release-assets: $f is empty" >&2; exit 1; }
done
echo "release-assets: $(ls "$out/completions" | wc -l) completion scripts, $(ls "$out/man" | wc -l) man pages in $out/" >&2
