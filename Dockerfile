# The operator image: `docker build -t ghcr.io/infercast/infercast:0.1.0 .`
# Runtime dependencies only (no dev extras), run as an unprivileged numeric user so that the
# Deployment's runAsNonRoot can be checked by the kubelet, on a root filesystem it can mount read-only.
FROM python:3.11-slim

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
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY forecasting ./forecasting
COPY policies ./policies
RUN pip install . && rm -rf /build

WORKDIR /
USER 10001:10001
ENTRYPOINT ["infercast"]
CMD ["run"]
