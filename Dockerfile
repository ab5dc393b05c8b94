# syntax=docker/dockerfile:1

# Build: a static binary (modernc.org/sqlite is pure Go, so no cgo).
# The build stage runs on the builder's platform and cross-compiles, so
# `docker buildx build --platform linux/amd64,linux/arm64 .` works.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/partnerhub ./cmd/partnerhub \
 && mkdir -p /out/data

# Run: distroless, no shell, as the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="partnerhub" \
      org.opencontainers.image.description="Self-hosted webhook integration hub for partner and affiliate programs" \
      org.opencontainers.image.source="https://github.com/partnerhub/partnerhub" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/partnerhub /partnerhub
COPY LICENSE /usr/share/doc/partnerhub/LICENSE
# /data must belong to nonroot: a new named volume takes the owner of the
# image's directory, and the embedded SQLite database and the generated
# secret key are written there.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
ENV PARTNERHUB_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/partnerhub"]
CMD ["serve"]
