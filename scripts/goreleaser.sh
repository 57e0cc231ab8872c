#!/usr/bin/env bash
# The release build, locally: installs the pinned goreleaser if missing,
# validates goreleaser.yaml, builds a snapshot release into dist/ (nothing is
# published) and checks what came out: six binaries, archives, the .deb and
# .rpm, checksums, the Homebrew cask, and that the linux/amd64 binary
# reports an injected version and commit.
#
# goreleaser goes to the project's tools directory like MinIO
# ($JETTY_TOOLS_BIN, default <user cache dir>/jetty-tools/bin).
# JETTY_GORELEASER_BIN points at another binary (nothing is installed).
set -euo pipefail
cd "$(dirname "$0")/.."

# v2.16.0 is the newest goreleaser that `go install` builds here: v2.17
# pulls an MSIX packager whose module the proxy refuses, v2.18 needs Go 1.27.
VERSION=v2.16.0

log() { printf 'goreleaser: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if [ -z "${JETTY_TOOLS_BIN:-}" ]; then
	case "$(uname -s)" in
	Darwin) cache="$HOME/Library/Caches" ;;
	*) cache="${XDG_CACHE_HOME:-$HOME/.cache}" ;;
	esac
	JETTY_TOOLS_BIN="$cache/jetty-tools/bin"
fi

install_goreleaser() {
	local bin=$1
	mkdir -p "$JETTY_TOOLS_BIN"
	log "installing goreleaser $VERSION into $JETTY_TOOLS_BIN with go install (the first build takes a few minutes)"
	GOBIN="$JETTY_TOOLS_BIN" GOFLAGS=-buildvcs=false go install "github.com/goreleaser/goreleaser/v2@$VERSION"
	[ "$bin" = "$JETTY_TOOLS_BIN/goreleaser" ] || cp "$JETTY_TOOLS_BIN/goreleaser" "$bin"
}

if [ -n "${JETTY_GORELEASER_BIN:-}" ]; then
	[ -x "$JETTY_GORELEASER_BIN" ] || die "JETTY_GORELEASER_BIN=$JETTY_GORELEASER_BIN is not an executable"
	gr=$JETTY_GORELEASER_BIN
else
	gr="$JETTY_TOOLS_BIN/goreleaser"
	have=$("$gr" --version 2>/dev/null | awk '/^GitVersion:/ { print $2 }' || true)
	case "$have" in
	"${VERSION#v}" | "$VERSION") log "goreleaser $have is installed at $gr" ;;
	*)
		[ -x "$gr" ] && log "$gr is goreleaser ${have:-of unknown version}, want $VERSION: reinstalling"
		install_goreleaser "$gr"
		;;
	esac
fi

start=$(date +%s)
# goreleaser reads the commit only when the repository has a remote; a
# fresh clone without one gets the project's URL through git's environment
# configuration (the repository's config is not touched).
if [ -z "$(git remote 2>/dev/null)" ]; then
	export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/jettythunder/jetty.git
fi
log "goreleaser check"
"$gr" check

log "snapshot release into dist/ (no publishing)"
"$gr" release --snapshot --clean --skip=publish

# What must be there.
for os in linux darwin windows; do
	for arch in amd64 arm64; do
		exe=jetty
		[ "$os" = windows ] && exe=jetty.exe
		found=$(find dist -path "*_${os}_${arch}*/$exe" -type f | head -1)
		[ -n "$found" ] || die "no $os/$arch binary in dist/"
		ext=tar.gz
		[ "$os" = windows ] && ext=zip
		ls dist/jetty_*_"${os}_${arch}".$ext >/dev/null 2>&1 || die "no $os/$arch .$ext archive"
	done
done
deb=$(ls dist/*.deb 2>/dev/null | head -1)
rpm=$(ls dist/*.rpm 2>/dev/null | head -1)
[ -n "$deb" ] || die "no .deb in dist/"
[ -n "$rpm" ] || die "no .rpm in dist/"
[ "$(ls dist/*.deb | wc -l)" -eq 2 ] || die "want a .deb per Linux arch"
[ "$(ls dist/*.rpm | wc -l)" -eq 2 ] || die "want an .rpm per Linux arch"
[ -s dist/checksums.txt ] || die "no dist/checksums.txt"
# Every archive and package is in the checksums, and they match.
for f in dist/*.tar.gz dist/*.zip dist/*.deb dist/*.rpm; do
	grep -q " $(basename "$f")\$" dist/checksums.txt || die "$(basename "$f") is not in checksums.txt"
done
(cd dist && sha256sum --quiet -c checksums.txt) || die "checksums do not match"
cask=$(find dist/homebrew -name jetty.rb 2>/dev/null | head -1)
[ -n "$cask" ] || die "no Homebrew cask (dist/homebrew/**/jetty.rb)"
grep -q 'binary "jetty"' "$cask" || die "the cask installs no jetty binary"

# The archives carry the docs, completions and man pages; every man page the
# cask names exists.
tgz=$(ls dist/jetty_*_linux_amd64.tar.gz)
listing=$(tar tzf "$tgz")
for want in README.md LICENSE CHANGELOG.md completions/jetty.bash completions/_jetty completions/jetty.fish completions/jetty.ps1 man/jetty.1.gz man/jetty-upload.1.gz jetty; do
	grep -qx "$want" <<<"$listing" || die "$tgz lacks $want"
done
for m in $(sed -n 's/^ *manpage "\(.*\)"$/\1/p' "$cask"); do
	grep -qx "$m" <<<"$listing" || die "the cask names $m, which the archive lacks"
done
unzip -l "$(ls dist/jetty_*_windows_amd64.zip)" | grep -q 'jetty.exe' || die "the windows zip lacks jetty.exe"

# The packages install the binary, man pages and completions.
if command -v dpkg-deb >/dev/null; then
	debfiles=$(dpkg-deb -c "$(ls dist/*amd64.deb)")
	for want in ./usr/bin/jetty ./usr/share/man/man1/jetty.1.gz ./usr/share/bash-completion/completions/jetty \
		./usr/share/zsh/vendor-completions/_jetty ./usr/share/fish/vendor_completions.d/jetty.fish; do
		grep -q " $want\$" <<<"$debfiles" || die "the .deb lacks $want"
	done
else
	log "dpkg-deb not found: .deb contents not inspected"
fi
if command -v rpm >/dev/null; then
	rpmfiles=$(rpm -qlp "$(ls dist/*x86_64.rpm)" 2>/dev/null)
	for want in /usr/bin/jetty /usr/share/man/man1/jetty.1.gz /usr/share/zsh/site-functions/_jetty; do
		grep -qx "$want" <<<"$rpmfiles" || die "the .rpm lacks $want"
	done
else
	log "rpm not found: .rpm contents not inspected"
fi

# The linux/amd64 binary carries the injected version and commit.
bin=$(find dist -path '*_linux_amd64*/jetty' -type f | head -1)
out=$("$bin" version)
echo "$out"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)
case "$out" in
"jetty dev "* | *"commit none"* | *"built unknown"*) die "version not injected: $out" ;;
esac
grep -q "commit $commit" <<<"$out" || die "version does not name commit $commit: $out"
grep -q "linux/amd64" <<<"$out" || die "not a linux/amd64 build: $out"

log "OK in $(($(date +%s) - start))s: $(ls dist/*.tar.gz dist/*.zip dist/*.deb dist/*.rpm | wc -l) archives and packages, checksums, $cask"
