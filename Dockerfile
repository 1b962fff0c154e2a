# syntax=docker/dockerfile:1
# The Sipp gateway server in a container: sipp-gateway serve --config /etc/sipp/gateway.toml
#
# Build stage: release wheels of sipppy, sipppy-backend-cpu and (for cuda/vulkan) the GPU
# backend, built from this checkout (llama.cpp is fetched and verified by the build).
# Runtime stage: a slim Python image with those wheels installed, nothing else.
#
#   docker build --build-arg SIPP_GATEWAY_BACKEND=cpu -t sipp-gateway:latest-cpu .
#   docker build --build-arg SIPP_GATEWAY_BACKEND=cuda \
#       --build-arg SIPP_GATEWAY_BUILDER_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu22.04 \
#       --build-arg SIPP_CUDA_ARCHITECTURES="90" -t sipp-gateway:latest-cuda .
#   docker build --build-arg SIPP_GATEWAY_BACKEND=vulkan -t sipp-gateway:latest-vulkan .
#
# compose.yaml passes these arguments per profile (cpu, cuda, vulkan-linux).

ARG SIPP_GATEWAY_BACKEND=cpu
ARG SIPP_GATEWAY_BUILDER_IMAGE=python:3.11-bookworm
ARG SIPP_GATEWAY_RUNTIME_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- builder
FROM ${SIPP_GATEWAY_BUILDER_IMAGE} AS builder
ARG SIPP_GATEWAY_BACKEND
# Empty: the portable list of native/backends.toml; e.g. "90" (H100/H200) or "89" (L4).
ARG SIPP_CUDA_ARCHITECTURES=""
ARG SIPP_BUILD_JOBS=""
ENV DEBIAN_FRONTEND=noninteractive
# Vulkan: the pinned ggml-vulkan needs Vulkan-Headers >= 1.3.261 (VK_EXT_layer_settings) and
# bookworm has 1.3.239, so the build takes the headers (only) of Debian trixie's
# libvulkan-dev, fetched and signature-checked by apt (SIPP_VULKAN_INCLUDE_DIR below).
RUN set -eux; \
    case "$SIPP_GATEWAY_BACKEND" in cpu|cuda|vulkan) ;; \
      *) echo "SIPP_GATEWAY_BACKEND must be cpu, cuda or vulkan, got '$SIPP_GATEWAY_BACKEND'" >&2; exit 2;; \
    esac; \
    apt-get update; \
    apt-get install -y --no-install-recommends build-essential git ca-certificates \
        python3 python3-venv python3-pip; \
    if [ "$SIPP_GATEWAY_BACKEND" = vulkan ]; then \
        apt-get install -y --no-install-recommends libvulkan-dev glslc spirv-headers; \
        echo "deb http://deb.debian.org/debian trixie main" \
            > /etc/apt/sources.list.d/trixie-vulkan-headers.list; \
        apt-get update; \
        (cd /tmp && apt-get download libvulkan-dev/trixie); \
        dpkg -x /tmp/libvulkan-dev_*.deb /opt/vulkan-headers; \
        rm /etc/apt/sources.list.d/trixie-vulkan-headers.list /tmp/libvulkan-dev_*.deb; \
    fi; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/build; \
    /opt/build/bin/pip install --no-cache-dir build "cmake>=3.31.8" ninja
# A recent CMake from PyPI whatever the base image (distro CMake may predate the CUDA
# architecture suffixes of the portable list, e.g. 120a-real).
ENV PATH=/opt/build/bin:$PATH

WORKDIR /src
COPY . .
ENV SIPP_BUILD_MODE=release
RUN --mount=type=cache,target=/root/.cache/sipppy \
    set -eux; \
    export SIPP_CUDA_ARCHITECTURES="$SIPP_CUDA_ARCHITECTURES" SIPP_BUILD_JOBS="$SIPP_BUILD_JOBS"; \
    if [ -d /opt/vulkan-headers/usr/include ]; then \
        export SIPP_VULKAN_INCLUDE_DIR=/opt/vulkan-headers/usr/include; \
    fi; \
    /opt/build/bin/python -m build --wheel --outdir /wheels .; \
    /opt/build/bin/python -m build --wheel --outdir /wheels sipp_backend_cpu; \
    if [ "$SIPP_GATEWAY_BACKEND" != cpu ]; then \
        /opt/build/bin/python -m build --wheel --outdir /wheels "sipp_backend_$SIPP_GATEWAY_BACKEND"; \
    fi; \
    ls -l /wheels

# ---------------------------------------------------------------------------- runtime
FROM ${SIPP_GATEWAY_RUNTIME_IMAGE} AS runtime
ARG SIPP_GATEWAY_BACKEND
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIPP_PYTHON_BACKEND=${SIPP_GATEWAY_BACKEND}
# libgomp1: ggml's CPU threads (OpenMP). Vulkan: the loader and Mesa's drivers (the GPU
# comes from the host's /dev/dri). CUDA: the driver comes from the NVIDIA container runtime,
# the CUDA runtime and cuBLAS from the nvidia-* wheels sipppy-backend-cuda depends on.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libgomp1; \
    if [ "$SIPP_GATEWAY_BACKEND" = vulkan ]; then \
        apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers; \
    fi; \
    rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    set -eux; \
    extras=gateway; \
    if [ "$SIPP_GATEWAY_BACKEND" != cpu ]; then extras="gateway,$SIPP_GATEWAY_BACKEND"; fi; \
    # The wheel files by path: PyPI also serves distributions named sipppy*, and pip would
    # prefer theirs over a --find-links candidate of the same version.
    pip install --no-cache-dir "$(ls /wheels/sipppy-*.whl)[$extras]" /wheels/sipppy_backend_*.whl; \
    useradd --system --uid 10001 --create-home --home-dir /var/lib/sipp sipp; \
    mkdir -p /etc/sipp /models

USER sipp
WORKDIR /var/lib/sipp
EXPOSE 8080 9090
# The management listener's readiness route (config: routes.readiness, management_bind).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9090/readyz', timeout=4).status != 200)"]
ENTRYPOINT ["sipp-gateway"]
CMD ["serve", "--config", "/etc/sipp/gateway.toml"]
