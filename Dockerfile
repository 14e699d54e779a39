# syntax=docker/dockerfile:1
# The SzCORE benchmark image of a trained brain-go-brr detector: one EDF in, one TSV out.
#
#   docker build --build-arg CHECKPOINT=runs/tusz/checkpoints/best.ckpt \
#     --build-arg OPERATING_POINT=runs/tusz/checkpoints/best.operating_point.json \
#     -t ghcr.io/USER/brain-go-brr-szcore:0.1.0 .
#   docker run --rm --network none -v /path/to/edfs:/data:ro -v /path/to/out:/output \
#     -e INPUT=rec.edf -e OUTPUT=rec.tsv ghcr.io/USER/brain-go-brr-szcore:0.1.0
#
# Both files must lie inside the build context (copy them next to this Dockerfile if
# needed). The image runs on the CPU, offline, as a non-root user. Untested here: the
# machines this project is built on have no Docker engine (docs/detect_and_container.md).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The user the algorithm runs as: no login, no home, no privileges.
ARG UID=10001
RUN adduser --disabled-password --gecos "" --home /nonexistent --shell /sbin/nologin \
    --no-create-home --uid "${UID}" appuser

# CPU torch first, pinned as in the Makefile (an unpinned torch pulls the CUDA packages).
ARG TORCH_SPEC=torch==2.13.0
RUN python -m pip install --index-url https://download.pytorch.org/whl/cpu "${TORCH_SPEC}"

# The project (editable: the Hydra configs in conf/ stay where the code finds them).
COPY pyproject.toml README.md constraints.txt ./
COPY conf ./conf
COPY brain_go_brr ./brain_go_brr
RUN python -m pip install -c constraints.txt -e ".[accel]"

# The model and its operating point, from the build arguments.
ARG CHECKPOINT
ARG OPERATING_POINT
COPY ${CHECKPOINT} /app/model/model.ckpt
COPY ${OPERATING_POINT} /app/model/model.operating_point.json

# Run time: offline, nothing written outside /output and /tmp.
ENV BGB_CHECKPOINT=/app/model/model.ckpt \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
    WANDB_MODE=disabled \
    HF_HUB_OFFLINE=1

USER appuser

VOLUME ["/data"]
VOLUME ["/output"]

ENV INPUT=""
ENV OUTPUT=""
CMD python3 -m brain_go_brr.szcore "/data/${INPUT}" "/output/${OUTPUT}"
