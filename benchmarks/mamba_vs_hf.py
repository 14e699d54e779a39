"""Our Mamba2 block against Hugging Face's pure-PyTorch ``Mamba2Mixer`` and a sequential scan.

At the V3 node-stream size (38 sequences of 960 steps = batch 2 x 19 electrodes, d_model 64,
d_state 16, headdim 8, expand 2, one layer, one direction), in one process and with the
contenders interleaved round by round so that a busy machine slows them alike:

1. ``transformers`` ``Mamba2Mixer`` on its torch path (``torch_forward``, chunk 64), loaded
   with our block's weights, so the outputs must agree (reported as a relative difference);
2. our :class:`brain_go_brr.models.mamba2.Mamba2` (backend ``torch``) at chunk 64 and smaller
   chunks (the chunk size changes speed and memory, not results);
3. the same block around the sequential float64 reference scan (one step per iteration;
   fewer rounds because it is slow; its backward only with ``--sequential-backward``).

Reported: median and best wall time of the forward pass (no grad) and of forward+backward,
and the bytes autograd saves for the backward pass (the activation memory of one layer).

Usage: ``python benchmarks/mamba_vs_hf.py [--repeats 7] [--threads 2 1] [--device cpu]``.
``benchmarks/bench_model.py`` imports :func:`run`. Needs ``transformers`` (the ``bench`` extra).
The CPU path of ``transformers`` prints that it falls back from the ``mamba_ssm`` kernels:
that fallback is the contender.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from brain_go_brr import accel
from brain_go_brr.accel import mamba as accel_mamba
from brain_go_brr.models.mamba2 import Mamba2, Mamba2Config
from brain_go_brr.models.ssd import ssd_scan_reference

# Nothing may be fetched at run time (the kernel hub included).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_hf_mixer(
    d_model: int, d_state: int, headdim: int, expand: int, chunk_size: int
) -> nn.Module:
    """A ``transformers`` ``Mamba2Mixer`` of the given sizes (its torch path on CPU)."""
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

    config = Mamba2Config(
        hidden_size=d_model,
        state_size=d_state,
        head_dim=headdim,
        expand=expand,
        num_heads=expand * d_model // headdim,
        n_groups=1,
        conv_kernel=4,
        chunk_size=chunk_size,
        use_bias=False,
        use_conv_bias=True,
        num_hidden_layers=1,
    )
    return Mamba2Mixer(config, layer_idx=0)


class _Compiled(nn.Module):
    """One block on the compiled CPU inference path of ``brain_go_brr.accel`` (what an
    accelerated stack runs per direction), with the given kernels."""

    def __init__(self, block: Mamba2, kernels: tuple[str, ...]) -> None:
        super().__init__()
        self.block, self.kernels = block, frozenset(kernels)

    def forward(self, u: Tensor) -> Tensor:
        mixed = accel_mamba.mix(self.block, u, False, self.kernels)
        return torch.nn.functional.linear(mixed, self.block.out_proj.weight)


class _SequentialScanMamba2(Mamba2):
    """Our block with the chunked scan swapped for the sequential float64 reference scan."""

    def _scan(self, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        return ssd_scan_reference(x, dt, A, B, C, self.D)


@dataclass
class Timing:
    """Wall times (s) of one contender, and the bytes autograd saved for its backward."""

    name: str
    forward_s: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    saved_bytes: int = 0


def _saved_bytes(module: nn.Module, u: Tensor) -> int:
    """Bytes of the tensors autograd keeps from one forward pass (distinct storages)."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(u)
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    return sum(
        n
        for ptr, n in storages.items()
        if ptr not in params and ptr != u.untyped_storage().data_ptr()
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def run(
    batch: int = 38,
    length: int = 960,
    d_model: int = 64,
    d_state: int = 16,
    headdim: int = 8,
    expand: int = 2,
    chunk_sizes: tuple[int, ...] = (64, 32, 16),
    repeats: int = 7,
    device: str = "cpu",
    sequential_backward: bool = False,
) -> str:
    """Time the contenders and return a markdown section (table and notes).

    Runs with the current ``torch.get_num_threads()``.
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    ours = {
        q: Mamba2(
            d_model,
            Mamba2Config(
                d_state=d_state,
                headdim=headdim,
                expand=expand,
                chunk_size=q,
                backend="torch",
                recompute=False,
            ),
        ).to(dev)
        for q in chunk_sizes
    }
    recomputing = Mamba2(
        d_model,
        Mamba2Config(
            d_state=d_state, headdim=headdim, expand=expand, chunk_size=32, backend="torch"
        ),
    ).to(dev)
    reference = next(iter(ours.values()))
    for block in [*ours.values(), recomputing]:
        block.load_state_dict(reference.state_dict(), strict=True)
    hf = build_hf_mixer(d_model, d_state, headdim, expand, chunk_size=64).to(dev)
    hf.load_state_dict(reference.state_dict(), strict=True)
    sequential = _SequentialScanMamba2(
        d_model,
        Mamba2Config(
            d_state=d_state, headdim=headdim, expand=expand, backend="torch", recompute=False
        ),
    ).to(dev)
    sequential.load_state_dict(reference.state_dict(), strict=True)
    compiled: nn.Module | None = None
    if dev.type == "cpu" and accel.available():
        compiled = _Compiled(reference, accel.KERNELS)

    u = torch.randn(batch, length, d_model, device=dev)
    u_grad = u.clone().requires_grad_(True)
    contenders: dict[str, nn.Module] = {"Hugging Face Mamba2Mixer, torch path (chunk 64)": hf}
    contenders |= {f"ours, chunked SSD (chunk {q})": block for q, block in ours.items()}
    contenders["ours, chunk 32, recompute=True (V3's default)"] = recomputing
    numba_scan: nn.Module | None = None
    if compiled is not None:
        contenders["ours, compiled CPU kernels (inference only)"] = compiled
        numba_scan = _Compiled(reference, ("mamba",))
        contenders["ours, compiled, numba scan (no llvm_scan)"] = numba_scan
    contenders["ours around the sequential float64 scan"] = sequential
    # forward only: the float64 loop is too slow to train, the compiled kernels have no backward
    no_backward = {id(compiled), id(numba_scan)} | (
        set() if sequential_backward else {id(sequential)}
    )

    with torch.no_grad():
        y_ours = reference(u)
        y_hf = hf(u)
        y_seq = sequential(u)
    diff_hf = ((y_hf - y_ours).norm() / y_seq.norm()).item()
    diff_seq = ((y_ours - y_seq).norm() / y_seq.norm()).item()
    diff_compiled = None
    if compiled is not None:
        with torch.no_grad():
            diff_compiled = ((compiled(u) - y_seq).norm() / y_seq.norm()).item()

    def forward(module: nn.Module) -> Callable[[], Any]:
        def step() -> Any:
            with torch.no_grad():
                return module(u)

        return step

    def train(module: nn.Module) -> Callable[[], Any]:
        def step() -> None:
            module.zero_grad(set_to_none=True)
            u_grad.grad = None
            module(u_grad).square().mean().backward()

        return step

    timings = {name: Timing(name) for name in contenders}
    for name, module in contenders.items():
        if id(module) not in no_backward:
            timings[name].saved_bytes = _saved_bytes(module, u_grad)
        forward(module)()  # warm-up (allocator, BLAS handles, numba compilation)
        if id(module) not in no_backward:
            train(module)()
    seq_repeats = max(1, repeats // 3)
    for r in range(repeats):
        for name, module in contenders.items():
            is_seq = module is sequential
            if is_seq and r >= seq_repeats:
                continue
            timings[name].forward_s.append(_timed(forward(module), dev))
            if id(module) not in no_backward:
                timings[name].train_s.append(_timed(train(module), dev))

    hf_t = timings[next(iter(contenders))]
    hf_fwd, hf_train = statistics.median(hf_t.forward_s), statistics.median(hf_t.train_s)

    def cell(values: list[float], base: float) -> str:
        if not values:
            return "not run"
        med = statistics.median(values)
        return f"{1e3 * med:.0f} ({1e3 * min(values):.0f}) ms, {base / med:.2f}x"

    rows = [
        "| contender | forward: median (best), speed-up vs HF | forward+backward: median (best), speed-up vs HF | saved for backward |",
        "|---|---|---|---|",
    ]
    for t in timings.values():
        rows.append(
            f"| {t.name} | {cell(t.forward_s, hf_fwd)} | {cell(t.train_s, hf_train)} | "
            + (f"{t.saved_bytes / 2**20:.0f} MiB |" if t.train_s else "— |")
        )
    threads = torch.get_num_threads()
    notes = [
        f"Input ({batch}, {length}, {d_model}) float32 on {device} ({threads} threads): d_state {d_state}, "
        f"headdim {headdim}, expand {expand} ({expand * d_model // headdim} heads), one layer, one direction. "
        f"{repeats} interleaved rounds (sequential scan: {seq_repeats}); forward under `torch.no_grad()`, "
        "forward+backward of `mean(y^2)` with gradients for the input and every parameter.",
        f"Same weights everywhere: relative difference of the outputs, HF vs ours (chunk {chunk_sizes[0]}): "
        f"{diff_hf:.1e}; ours vs the float64 sequential scan: {diff_seq:.1e}"
        + (
            f"; compiled CPU kernels vs the float64 sequential scan: {diff_compiled:.1e}."
            if diff_compiled is not None
            else "."
        ),
        "The compiled CPU kernels (`brain_go_brr.accel`, what `accelerate()` gives CPU "
        "inference) run the recurrence step by step, the convolution, scan, gate and norm in "
        "one LLVM vector kernel with the state in registers (`accel/scan.py`); they have "
        "no backward (training runs the chunked scan), "
        "hence no forward+backward entry.",
        "Speed-ups are ratios of medians measured in this run; on a shared machine the absolute "
        "times move with the load, the ratios much less.",
        "The chunk rows keep their activations for backward (`recompute=False`), as HF's mixer "
        "does: the like-for-like comparison. The `recompute=True` row keeps only the block's "
        "input (inside `torch.utils.checkpoint`, which the saved-tensor count does not see) and "
        "runs the block's forward again in backward.",
    ]
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[64, 32, 16])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[torch.get_num_threads()], help="one run each"
    )
    parser.add_argument(
        "--sequential-backward",
        action="store_true",
        help="also time the sequential scan's backward (minutes on 2 cores)",
    )
    args = parser.parse_args(argv)
    from _common import write_section

    from brain_go_brr.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # as train() and evaluate() do: brain_go_brr/runtime.py

    parts = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        table = run(
            repeats=args.repeats,
            device=args.device,
            chunk_sizes=tuple(args.chunk_sizes),
            sequential_backward=args.sequential_backward,
        )
        print(table)
        parts.append(f"### {threads} thread{'s' if threads > 1 else ''}\n\n{table}")
    markdown = "\n".join(parts)
    write_section(
        "mamba_vs_hf", "Mamba2 block: ours vs Hugging Face Mamba2Mixer (node-stream size)", markdown
    )


if __name__ == "__main__":
    main()
