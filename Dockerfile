# ferry-server on CPU: a Debian bookworm image with ferry-server, the echo and LLM backends and the
# demo repository (echo, tiny-llama) at /models. Mount a repository of your own over /models.
#   docker build -t ferry .
#   docker run --rm -p 8000:8000 -p 8002:8002 -e FERRY_API_KEY=change-me -v "$PWD/models:/models:ro" ferry
# Ports: 8000 HTTP (APIs and the chat page at /), 8002 /metrics and health, 5555 ZeroMQ.
# docs/deploy.md has the details; scripts/package is the build stage, runnable without Docker.

FROM debian:bookworm AS build
WORKDIR /src
# The build packages first, so that source edits reuse this layer.
COPY scripts/setup scripts/setup
RUN scripts/setup --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN FERRY_PACKAGE_BUILD_DIR=/tmp/build scripts/package /opt/ferry

FROM debian:bookworm-slim
# The shared libraries that ferry-server and the backends link (tests/integration/deploy_test.cc
# checks this list against the built binaries), and curl for the health check.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libcivetweb1 libjsoncpp25 libzmq5 libicu72 libpcre2-8-0 libstdc++6 libgcc-s1 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/ferry /opt/ferry
COPY model_repository /models
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ferry
USER 10001:10001
ENV PATH=/opt/ferry/bin:$PATH
EXPOSE 8000 8002 5555
# ferry-server drains in-flight requests on SIGTERM (up to --shutdown-timeout, 30 s by default):
# give `docker stop` more than that (docker stop -t 40; Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# The metrics listener answers health checks with workers of its own, so long streams on 8000 do
# not make a busy server look dead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8002/v2/health/ready || exit 1
ENTRYPOINT ["ferry-server"]
CMD ["--model-repository", "/models", "--http-address", "0.0.0.0", "--http-port", "8000", \
     "--metrics-port", "8002", "--zmq-endpoint", "tcp://0.0.0.0:5555"]
