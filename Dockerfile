# syntax=docker/dockerfile:1
#
# dstream container image: the processor (entrypoint), the log generator and a health-check probe.
#
#   docker build -t dstream:dev .
#   docker build --build-arg VERSION=1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t dstream:1.2.3 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/dstream:1.2.3 .
#
# Runs as the numeric non-root user 65532 on a read-only root filesystem (it writes nothing to disk).
# Binaries: /usr/local/bin/dstream (ENTRYPOINT), /usr/local/bin/logsender, /usr/local/bin/httpprobe.

ARG GO_VERSION=1.26

# ---- build: static binaries, cross-compiled on the build platform ------------------------------------------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath

# Dependencies first, so that a source change does not download modules again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG TARGETOS
ARG TARGETARCH
# The version and revision reach the binary (dstream version, /api/status,
# dstream_build_info), not only the image's labels.
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/ ./cmd/dstream ./cmd/logsender \
 && cd tools/httpprobe \
 && GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/httpprobe .

# ---- runtime: distroless static (CA certificates, tzdata, /etc/passwd with nonroot; no shell) ---------------
FROM gcr.io/distroless/static-debian12:nonroot AS runtime

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="dstream" \
      org.opencontainers.image.description="Kafka-native micro-batch stream processor (DStream model) with Redis checkpoints" \
      org.opencontainers.image.source="https://github.com/dstream-io/dstream" \
      org.opencontainers.image.url="https://github.com/dstream-io/dstream" \
      org.opencontainers.image.vendor="dstream" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"

COPY --from=build /out/dstream /out/logsender /out/httpprobe /usr/local/bin/

USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dstream"]
