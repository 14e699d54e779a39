"""Process-wide CPU settings that the entry points apply before any tensor work.

:func:`tune_cpu_allocator` keeps glibc's ``malloc`` from handing large blocks back to the
operating system. By default glibc serves every allocation above a threshold (at most
32 MB) with a fresh ``mmap`` and returns it with ``munmap`` when freed, so each large
intermediate tensor of the model (the edge stream's are 100+ MB at batch 2) is
page-faulted in, zero-filled by the kernel, at every forward pass. On a small CPU machine
that kernel work can take more time than the arithmetic (``benchmarks/bench_model.py``
measures v3 inference with and without the tuning; BENCHMARKS.md). PyTorch's CPU
performance guide gets the same effect by preloading jemalloc or tcmalloc; this needs no
extra library.

The cost: memory freed by the process stays mapped to it (the resident set does not
shrink after a peak). The scorer's numpy work gained nothing from it, so only
the code that runs the model applies it: ``train()``, ``evaluate()`` with a checkpoint,
``brain-go-brr detect`` and the model benchmarks, not the scorer or the data pipeline.
Set ``BGB_MALLOC_TUNING=0`` to keep glibc's defaults everywhere. On systems without glibc
(macOS, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from brain_go_brr.config import env_flag

log = logging.getLogger(__name__)

ENV_SWITCH = "BGB_MALLOC_TUNING"
# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_tuned: bool | None = None


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` has taken effect in this process."""
    return bool(_tuned)


def tune_cpu_allocator() -> bool:
    """Serve large allocations from the heap and never trim it (glibc only; idempotent).

    Returns whether the tuning is in effect. Skipped when ``BGB_MALLOC_TUNING=0`` or when
    the C library is not glibc.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not env_flag(ENV_SWITCH):
        log.info("allocator tuning off (%s=0): glibc malloc defaults kept", ENV_SWITCH)
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError when not glibc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mmap_max = 0: no allocation goes to its own mmap; trim threshold at the int maximum:
    # the heap top is never returned to the system.
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if ok:
        log.debug("glibc malloc tuned: large blocks from the heap, no trimming")
    _tuned = ok
    return ok
