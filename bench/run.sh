#!/usr/bin/env bash
# The WAN benchmark against peers, reproducible by one command
# (`make bench-peers`): installs what it needs (awscli and rclone from
# Debian, the pinned MinIO and toxiproxy with `go install`), then runs
# BenchmarkPeers once and writes its tables to bench/results.md.
#
# Knobs (environment): JETTY_BENCH_LINKS (loopback,wan,lossy),
# JETTY_BENCH_TOOLS (jetty,single PUT,aws s3 cp,rclone,small),
# JETTY_BENCH_MIB (file size, default 256), JETTY_BENCH_SMALL (number of
# 1 MiB files, default 1000; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/aws ] || need+=(awscli) # the Debian package, not another aws on PATH
command -v rclone >/dev/null 2>&1 || need+=(rclone)
if [ ${#need[@]} -gt 0 ]; then
	echo "bench: installing ${need[*]} from Debian" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
./scripts/minio.sh
./scripts/toxiproxy.sh

echo "bench: $(/usr/bin/aws --version 2>&1 | head -n1)" >&2
echo "bench: $(rclone version 2>/dev/null | head -n1)" >&2
export JETTY_BENCH_OUT="${JETTY_BENCH_OUT:-$PWD/bench/results.md}"
export JETTY_REQUIRE_SERVICES=1
go test -run '^$' -bench BenchmarkPeers -benchtime 1x -timeout 90m -v ./bench
echo "bench: tables written to $JETTY_BENCH_OUT" >&2
