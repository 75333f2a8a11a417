# syntax=docker/dockerfile:1
# Multi-stage: a pinned Go toolchain builds a static binary; the runtime is
# distroless (no shell, no package manager) and runs as a non-root user.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV GOTOOLCHAIN=local CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags "-s -w" -o /out/bulkhead ./cmd/bulkhead

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bulkhead /bulkhead
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/bulkhead"]
