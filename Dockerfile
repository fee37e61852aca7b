# The operator image: `docker build -t ghcr.io/infercast/infercast:0.1.0 .`
# Runtime dependencies only (no dev extras), at the versions pinned in constraints.txt (`make constraints`),
# so that two builds of one commit install the same packages. It runs as an unprivileged numeric user so
# that the Deployment's runAsNonRoot can be checked by the kubelet, on a root filesystem it can mount read-only.
FROM python:3.11-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
# OCI image annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md);
# pass --build-arg REVISION=$(git rev-parse HEAD) for the commit the image is built from.
LABEL org.opencontainers.image.title="infercast" \
      org.opencontainers.image.description="Predictive scaling, circuit breakers and routing for GPU inference services on Kubernetes" \
      org.opencontainers.image.source="https://github.com/infercast/infercast" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

# HOME=/tmp: the only writable place at run time is the Deployment's /tmp volume, so library caches go there.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

RUN groupadd --system --gid 10001 infercast \
    && useradd --system --uid 10001 --gid infercast --no-create-home --shell /usr/sbin/nologin infercast

# Only what the distribution is built from (.dockerignore keeps the rest out of the context).
WORKDIR /build
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY controller ./controller
COPY forecasting ./forecasting
COPY policies ./policies
RUN pip install --constraint constraints.txt . && rm -rf /build

WORKDIR /
USER 10001:10001
ENTRYPOINT ["infercast"]
CMD ["run"]
