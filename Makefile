# jetty: the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(shell git rev-parse --short HEAD 2>/dev/null || echo none) -X main.date=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: run demo console console-screenshots test scale-out test-deps cli-captures test-keyring services minio toxiproxy check build clean bench-server bench-client bench-engine bench-peers bench-peers-short release-check ci-smoke fuzz-short

## demo: the main job on the embedded default, end to end: dev server, login, upload
## with progress, download, verify, logout, stop (all in a temporary directory)
demo:
	@./scripts/demo.sh

## console: a dev server with the operator console on, seeded with the demo's data; prints the URL and a one-time token, runs until Ctrl-C
console:
	@./scripts/console.sh

## console-screenshots: PNGs of every console page at 1280 and 390 px wide into docs/console/ (needs Chromium)
console-screenshots:
	JETTY_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run TestConsoleScreenshots ./server/console/

## run: a dev server on the embedded default (SQLite + local disk) that stays up
run:
	$(GO) run ./cmd/jetty server --dev

## test: start PostgreSQL and Redis if they are down, install the pinned MinIO and
## toxiproxy (the S3 and network-shaping tests start their own on free ports) and the
## Debian packages the tests drive (tmux, gnome-keyring, dbus, libsecret-tools, xfsprogs, haproxy),
## run every test with the race detector, then the keychain tests against a real Secret
## Service; both test steps run even when the first fails, and both results are reported
## (scripts/test.sh)
test:
	@GO="$(GO)" PKGS="$(PKGS)" ./scripts/test.sh

## scale-out: just the scale-out test, verbosely (issue 21; also part of `make test`): three
## `jetty server` processes on PostgreSQL + MinIO + Redis behind HAProxy with deploy/haproxy.cfg,
## two relays; mixed uploads, an instance SIGKILLed mid-upload, a rolling restart, jobs done once;
## prints the figures kept in docs/RELIABILITY.md (about a minute; installs haproxy if missing)
scale-out: services minio test-deps
	JETTY_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -run '^TestScaleOut$$' -v -timeout 15m ./internal/e2e

services:
	@./scripts/services.sh

test-deps:
	@./scripts/test-deps.sh

minio:
	@./scripts/minio.sh

toxiproxy:
	@./scripts/toxiproxy.sh

## test-keyring: the keychain against a real Secret Service (gnome-keyring under a
## private dbus-run-session; installs gnome-keyring, dbus, libsecret-tools if missing)
test-keyring:
	@./scripts/keyring-test.sh

## bench-server: peak RSS and throughput of a real server process taking a 2 GiB upload
bench-server: services minio
	$(GO) test -run '^$$' -bench BenchmarkServerUploadRSS -benchtime 1x ./cmd/jetty

## bench-client: peak RSS of the client uploading a generated 10 GiB file (bound: workers × chunk + 64 MiB)
bench-client: services minio
	$(GO) test -run '^$$' -bench BenchmarkClientRSS -benchtime 1x -timeout 30m ./internal/e2e

## bench-engine: hashing and planning throughput (SHA-256 vs BLAKE3, per core), and the
## whole pipeline to a local server; compare with `openssl speed -evp sha256`
bench-engine:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./engine
	$(GO) test -run '^$$' -bench BenchmarkPipelineLocal -benchtime 3x ./internal/e2e

## check: formatting and vet
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## bench-peers: the full run: jetty against a single PUT, aws s3 cp and rclone (at
## their defaults and tuned: 32 at once, 8 MB parts) and a curl -T PUT to the embedded
## server, same files, same MinIO, one run, over loopback (1 and 10 GiB, beside openssl's
## SHA-256), toxiproxy links (wan-2MB, wan-4MB, long-100ms, lossy; 256 MiB and 1 GiB) and
## an aggregate-capped uplink (network namespace, veth, tbf 100 Mbit/s, as root); prints
## issue 18's targets with PASS/FAIL (installs awscli, rclone, curl, iproute2, MinIO,
## toxiproxy); about an hour; tables in bench/results.md, figures in docs/BENCHMARKS.md
bench-peers:
	@./bench/run.sh

## bench-peers-short: the CI-sized run of bench-peers (a few minutes): 256 MiB over
## loopback, wan-4MB and the aggregate uplink; jetty, tuned aws s3 cp, a single PUT
bench-peers-short:
	@JETTY_BENCH_PROFILE=short ./bench/run.sh

## fuzz-short: every `go test -fuzz` target for JETTY_FUZZTIME (default 10s) each, seeds
## from testdata/fuzz; a failing input is left there to commit as a regression seed
fuzz-short:
	@./scripts/fuzz-short.sh

## release-check: the release build locally: installs the pinned goreleaser, checks
## goreleaser.yaml, builds a snapshot into dist/ (nothing published) and checks it
release-check:
	@./scripts/goreleaser.sh

## ci-smoke: runs the `sh ci-smoke` recipes of docs/ci.md against a local dev server
ci-smoke:
	@./scripts/ci-recipes-test.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/jetty ./cmd/jetty

clean:
	rm -rf bin dist dist-assets

## cli-captures: what a person sees, from a real terminal: builds jetty, starts a dev
## server and types an upload (mid-way and done), Ctrl-C and resume, ls, a download and
## some errors in a private tmux session; writes docs/cli/captures/ (not part of make test)
cli-captures:
	$(GO) run ./scripts/clicaptures
