"""Shared pieces of the benchmarks: machine description and BENCHMARKS.md sections.

Each benchmark owns one section of ``BENCHMARKS.md`` between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and rewrites only that section, so
benchmarks can be re-run one at a time without losing the others' results.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from brain_go_brr.runtime import allocator_tuned

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    """One line describing this machine: CPU model, cores, memory, torch, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    parts = [f"{cpu}", f"{os.cpu_count()} cores", f"{mem_gib:.0f} GiB RAM"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    parts.append(f"Python {platform.python_version()}")
    parts.append(
        "malloc tuned (brain_go_brr/runtime.py)" if allocator_tuned() else "malloc defaults"
    )
    return ", ".join(parts)


def command_line() -> str:
    """The command that ran this benchmark, relative to the repository root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(BENCHMARKS_MD.parent)
    except ValueError:
        script = Path(script.name)
    args = [_redact(arg) for arg in sys.argv[1:]]
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, args)])


def _redact(arg: str) -> str:
    """Hide paths of this machine outside the repository (local copies of other projects)."""
    path = Path(arg)
    if not path.is_absolute():
        return arg
    try:
        return str(path.resolve().relative_to(BENCHMARKS_MD.parent))
    except ValueError:
        return "PATH/TO/" + path.name


def write_section(name: str, title: str, body_markdown: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md with a dated block."""
    from brain_go_brr.io import atomic_write_text

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"<!-- {name}:start -->\n## {title}\n\n"
        f"- Machine: {machine()}\n- Command: `{command_line()}`\n- Date: {stamp}\n\n"
        f"{body_markdown.strip()}\n<!-- {name}:end -->"
    )
    text = (
        BENCHMARKS_MD.read_text()
        if BENCHMARKS_MD.exists()
        else (
            "# Benchmarks\n\nEvery number here was measured by a script in `benchmarks/`; each section "
            "names the machine and the command that produced it. Re-run one with its command.\n"
        )
    )
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    atomic_write_text(BENCHMARKS_MD, text)
