# syntax=docker/dockerfile:1
# One image for every Flowgate service: `flowgate ingress`, `flowgate
# orchestrator`, `flowgate channel NAME`, `flowgate dev`.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that source changes reuse the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Static binary: the SQLite driver is pure Go (modernc.org/sqlite), so no cgo.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/flowgate ./cmd/flowgate

FROM alpine:3.20
# ca-certificates: provider APIs are HTTPS. wget (busybox) runs the health checks.
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 10001 flowgate \
    && adduser -S -D -H -u 10001 -G flowgate flowgate \
    && mkdir -p /data && chown flowgate:flowgate /data
COPY --from=build /out/flowgate /usr/local/bin/flowgate
USER 10001:10001
WORKDIR /data
# `flowgate dev` listens on loopback by default; in a container the port is
# published (or not) with -p, so it listens on every interface there.
ENV FLOWGATE_DATA_DIR=/data \
    FLOWGATE_LOG_FORMAT=json \
    FLOWGATE_HTTP_ADDR=0.0.0.0:8080
# 8080: the ingress API and its /metrics; 9090: /metrics, /healthz and /readyz
# of the orchestrator and channel workers.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/flowgate"]
CMD ["dev"]
