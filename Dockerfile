# jetty in a container: one static binary (the server, the edge relay and the
# client) on distroless, run as an unprivileged user. See docs/deploy.md.
#
#   docker build -t jetty --build-arg VERSION=$(git describe --tags --always) .
#   docker run -p 3001:3001 -e DATABASE_URL=... -e REDIS_URL=... jetty
#   docker run -p 3002:3001 -e JETTY_EDGE_SECRET=... jetty edge --origin https://jetty.example.com
#
# scripts/dockerfile_test.go parses this file (no container runtime runs in
# CI): keep the Go version in step with go.mod's go line, CGO off, a
# non-root USER and an ENTRYPOINT of jetty.
#
# Base images are pinned by tag and digest. The digests were copied from
# public Dockerfiles dated 2026-08 (no registry is reachable where this was
# written): if a pull refuses one, refresh it with
#   crane digest golang:1.26.8-bookworm
#   crane digest gcr.io/distroless/static-debian12:nonroot

FROM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
# The toolchain of the image, never one downloaded by go.mod's line; no cgo:
# the SQLite driver (modernc.org/sqlite) is pure Go, so the binary is static.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=none
ARG DATE=unknown
RUN go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/jetty ./cmd/jetty \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/jetty /usr/local/bin/jetty
# The embedded default (SQLite file and objects under the data directory)
# when neither DATABASE_URL nor LYVE_ENDPOINT is set; unused otherwise.
COPY --from=build --chown=65532:65532 /out/data /var/lib/jetty
ENV JETTY_DATA_DIR=/var/lib/jetty \
    JETTY_LOG_FORMAT=json \
    PORT=3001
VOLUME ["/var/lib/jetty"]
# distroless's nonroot user; numeric so that runtimes that refuse root
# (runAsNonRoot) can check it without reading /etc/passwd.
USER 65532:65532
EXPOSE 3001
# No HEALTHCHECK: the image has no shell and no curl to run one, and jetty
# has no health subcommand. Load balancers and orchestrators probe
# GET /healthz (alive) and GET /readyz (ready for traffic) over HTTP.
ENTRYPOINT ["/usr/local/bin/jetty"]
CMD ["server"]
