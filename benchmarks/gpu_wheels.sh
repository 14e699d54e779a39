#!/usr/bin/env bash
# Wheels that benchmarks/gpu_check.py needs on the lent GPU machine beyond what it has
# (torch, PyG, Lightning, torchmetrics, numba, scipy, rich, ...: see the device tool's
# KINDS.md), for its Python 3.12 on x86-64, into .whl/ (ignored by git; about 8 MB). Run
# here, with network; the device call carries .whl and installs it with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl \
  hydra-core==1.3.2 omegaconf==2.3.0 mne edfio pooch decorator platformdirs
# antlr4 (hydra's parser) ships as a source archive only: build its wheel here.
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -la .whl
