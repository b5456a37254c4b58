# syntax=docker/dockerfile:1
#
# The job as one compiled executable in a minimal image:
#
#   docker build -t activity-aggregate-updater .
#   docker run --env-file config/example.env -p 9464:9464 activity-aggregate-updater
#
# The build stage downloads denort (the runtime `deno compile` embeds the job
# in) from Deno's release server, so it needs that server to be reachable.
#
# Multi-arch (linux/amd64, linux/arm64): the build stage runs on the builder's
# own platform and cross-compiles for the target one with `deno compile
# --target`, so no emulation is needed:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE --push .

# ---- build: deno compile with exactly the job's permissions (scripts/compile.sh)
FROM --platform=$BUILDPLATFORM denoland/deno:2.9.6 AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when the import map or the
# lock file changes, not on every source change. --frozen: a lock file that
# does not match deno.json fails the build instead of being rewritten.
COPY deno.json deno.lock ./
RUN deno install --frozen

COPY main.ts ./
COPY lib/ ./lib/
COPY scripts/compile.sh scripts/deno.sh ./scripts/
# Type-checks and compiles, with the same flags as a local build, for the
# image's platform (TARGETARCH, set by BuildKit; when unset, the builder's).
ARG TARGETARCH
RUN case "${TARGETARCH:-}" in \
      amd64) target=x86_64-unknown-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu ;; \
      "") target="" ;; \
      *) echo "no deno compile target for TARGETARCH=$TARGETARCH" >&2; exit 1 ;; \
    esac; \
    bash scripts/compile.sh ${target:+--target "$target"} --output /out/activity-aggregate-updater

# ---- runtime: glibc and libgcc only (what a deno-compiled binary links), no shell
FROM gcr.io/distroless/cc-debian12:nonroot
# Owned by root and not writable by the job's user.
COPY --from=build /out/activity-aggregate-updater /app/activity-aggregate-updater
# The image's non-root user, by number: Kubernetes' runAsNonRoot can only
# verify a numeric user.
USER 65532:65532
WORKDIR /app
# The allocator settings of scripts/compile.sh (--print-malloc-env): glibc
# reads them at start, so they cannot be compiled into the binary.
ENV HTTP_HOST=0.0.0.0 \
    HTTP_PORT=9464 \
    NO_COLOR=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=16384 \
    MALLOC_TRIM_THRESHOLD_=65536 \
    MALLOC_TOP_PAD_=0
# /metrics, /healthz, /readyz
EXPOSE 9464
# SIGTERM is the graceful stop: the window in flight is finished and committed
# within SHUTDOWN_TIMEOUT (25 s by default). `docker stop` kills after 10 s
# unless given more (docker stop -t 30, or --stop-timeout at docker run).
STOPSIGNAL SIGTERM
# No curl in a distroless image: the binary asks its own /healthz (exit 0/1),
# on HTTP_PORT from the environment (or ENV_FILE). Liveness only: an outage
# turns /readyz 503, which is no reason to restart the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/app/activity-aggregate-updater", "healthcheck"]
ENTRYPOINT ["/app/activity-aggregate-updater"]
CMD ["run"]
