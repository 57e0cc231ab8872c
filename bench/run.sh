#!/usr/bin/env bash
# The benchmark against peers, reproducible by one command: installs what
# it needs (awscli, rclone, curl and iproute2 from Debian, the pinned MinIO
# and toxiproxy with `go install`), builds the aggregate link's client
# network namespace, then runs BenchmarkPeers once and writes its tables to
# bench/results.md.
#
#   make bench-peers         # the full run (about an hour): every link, 256 MiB and 1 GiB on the WAN links, 1 and 10 GiB on loopback
#   make bench-peers-short   # JETTY_BENCH_PROFILE=short: 256 MiB; loopback, wan-4MB, aggregate; a few minutes
#
# Knobs (environment): JETTY_BENCH_PROFILE (full, short), JETTY_BENCH_LINKS
# (loopback,wan-2MB,wan-4MB,long-100ms,lossy,aggregate),
# JETTY_BENCH_TOOLS (jetty,single PUT,aws s3 cp,aws s3 cp (tuned),rclone,
# rclone (tuned),jetty (embedded),curl -T (embedded),small), JETTY_BENCH_MIB
# (a comma list of file sizes in MiB for every link), JETTY_BENCH_SMALL
# (number of 1 MiB files, full run, default 1000; 0 skips),
# JETTY_BENCH_UPLINK_MBIT (the aggregate link's uplink, default 100).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
need=()
[ -x /usr/bin/aws ] || need+=(awscli) # the Debian package, not another aws on PATH
command -v rclone >/dev/null 2>&1 || need+=(rclone)
command -v curl >/dev/null 2>&1 || need+=(curl)
{ command -v ip && command -v tc; } >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
	echo "bench: installing ${need[*]} from Debian" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
./scripts/minio.sh
./scripts/toxiproxy.sh

# The aggregate link: a network namespace for the clients, a veth pair
# between it and this namespace (where MinIO, the jetty server and
# toxiproxy run), and a tbf qdisc on the client end's egress: the uplink
# that every connection shares. toxiproxy, listening on this end's
# address, adds the latency (tbf cannot delay; netem is not available).
uplink="${JETTY_BENCH_UPLINK_MBIT:-100}"
ns="jetty-bench-$$"
vs="jbs$$" # this namespace's end
vc="jbc$$" # the clients' end
net="10.$((200 + $$ % 50)).$(($$ / 50 % 250)).0"
srv_addr="${net%.0}.1"
cli_addr="${net%.0}.2"
cleanup() {
	$sudo ip netns del "$ns" 2>/dev/null || true # takes its end of the veth, and so the pair
	$sudo ip link del "$vs" 2>/dev/null || true
}
netns_setup() {
	$sudo ip netns add "$ns" &&
		$sudo ip link add "$vs" type veth peer name "$vc" netns "$ns" &&
		$sudo ip addr add "$srv_addr/30" dev "$vs" &&
		$sudo ip link set "$vs" up &&
		$sudo ip netns exec "$ns" ip link set lo up &&
		$sudo ip netns exec "$ns" ip addr add "$cli_addr/30" dev "$vc" &&
		$sudo ip netns exec "$ns" ip link set "$vc" up &&
		$sudo ip netns exec "$ns" tc qdisc add dev "$vc" root tbf rate "${uplink}mbit" burst 256kb latency 50ms &&
		$sudo ip netns exec "$ns" curl -s -o /dev/null --max-time 5 "http://$srv_addr:9/" 2>/dev/null
	# curl's answer (refused: exit 7) is what tells that the address is reached.
	local rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 7 ]
}
profile="${JETTY_BENCH_PROFILE:-full}"
links="${JETTY_BENCH_LINKS:-}"
export JETTY_BENCH_PROFILE="$profile"
if [ -z "$links" ] || [[ ",$links," == *,aggregate,* ]]; then
	trap cleanup EXIT
	trap 'exit 130' INT # so that the EXIT trap runs on a signal too
	trap 'exit 143' TERM HUP
	if err=$(netns_setup 2>&1); then
		export JETTY_BENCH_NETNS="$ns" JETTY_BENCH_NETNS_ADDR="$srv_addr" JETTY_BENCH_UPLINK_MBIT="$uplink"
		echo "bench: aggregate link: namespace $ns, veth $vs ($srv_addr) ↔ $vc ($cli_addr), tbf ${uplink}mbit on $vc" >&2
	else
		cleanup
		export JETTY_BENCH_NETNS_SKIP="the aggregate link's network namespace could not be built (needs root or CAP_NET_ADMIN, iproute2, and veth and tbf in the kernel): ${err:-a set-up command failed}"
		echo "bench: SKIPPING the aggregate link: $JETTY_BENCH_NETNS_SKIP" >&2
	fi
fi

echo "bench: profile $profile; $(/usr/bin/aws --version 2>&1 | head -n1)" >&2
echo "bench: $(rclone version 2>/dev/null | head -n1); $(curl --version | head -n1 | cut -d' ' -f1-2)" >&2
export JETTY_BENCH_OUT="${JETTY_BENCH_OUT:-$PWD/bench/results.md}"
export JETTY_REQUIRE_SERVICES=1
timeout=4h
[ "$profile" = short ] && timeout=30m
go test -run '^$' -bench BenchmarkPeers -benchtime 1x -timeout "$timeout" -v ./bench
echo "bench: tables written to $JETTY_BENCH_OUT" >&2
