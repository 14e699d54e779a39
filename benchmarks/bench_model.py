"""V3 detector: FLOPs per stage, inference and training speed, memory, PE schedule, Mamba2.

Measured in one run on this machine (issue 3's benchmark), written to the ``bench_model``
section of BENCHMARKS.md:

1. FLOPs per 60 s window per stage (``torch.utils.flop_counter``, 2 per multiply-add; the
   SSD scan's ``einsum``/``@`` reach the counter as ``bmm``, so they are included;
   element-wise work and ``eigh`` are not counted), live parameters per stage.
2. A float32 matmul (2048 x 2048) in the same run: the machine's reachable GFLOP/s.
3. Inference at batch 2 (``eval``, no grad), all with the same weights: v3 as inference runs
   it (plain model + ``brain_go_brr.accel.accelerate()``) in float32 and bf16 autocast (and
   the largest difference of its probabilities from float32's), the plain model eager and
   under ``torch.compile`` (inductor), each accel kernel left out or its part compiled by
   inductor instead (the kernel table), and SeizureTransformer when a local copy of its
   ``architecture.py`` is given (``--seizure-transformer PATH``; never committed).
   Contenders are interleaved round by round so a busy machine slows them alike.
4. Training step (forward + backward) at batch 4: keeping every Mamba2 activation, the
   default (Mamba2 blocks recompute their internals in backward), and activation
   checkpointing. Windows/s (second step) and peak memory per window, two ways: the peak of
   live tensor bytes under ``torch.profiler`` (what a GPU's limit is about) and the growth
   of the peak resident set (``ru_maxrss``) of a fresh process during its first step. Both
   count the activations kept for backward, the backward's temporaries and the gradients
   (12 MB for v3).
5. The PE stage alone at batch 2 on top-k adjacencies: ``pe=dynamic`` vs ``pe=semi``.
6. Engineer C's ``mamba_vs_hf.run()``: our Mamba2 block against Hugging Face's.

Usage: ``python benchmarks/bench_model.py [--seizure-transformer PATH] [--repeats 3]
[--skip-mamba] [--note TEXT]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brain_go_brr import accel
from brain_go_brr.models import V3Config, V3Detector
from brain_go_brr.models.edge_stream import pairs_to_dense, topk_adjacency
from brain_go_brr.models.info import dead_parameters, stage_flops, stage_parameters
from brain_go_brr.models.laplacian_pe import LaplacianPE
from brain_go_brr.runtime import tune_cpu_allocator

WINDOW = 15360  # 60 s at 256 Hz
#: Batches of 2 windows on which bf16 autocast is compared with float32.
BF16_CHECK_BATCHES = 8


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Warm each contender up once, then time them round by round."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(_timed(fn))
    return times


def load_seizure_transformer(path: Path) -> nn.Module:
    """SeizureTransformer() from a local copy of its architecture.py (commit 803dcfb)."""
    spec = importlib.util.spec_from_file_location("seizure_transformer_architecture", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(
            f"{path}: cannot import (expected SeizureTransformer's architecture.py)"
        )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model: nn.Module = module.SeizureTransformer()
    return model


def matmul_gflops(repeats: int, size: int = 2048) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = min(_interleaved({"mm": lambda: a @ b}, repeats)["mm"])
    return 2 * size**3 / best / 1e9


def peak_live_bytes(step: Callable[[], Any]) -> int:
    """Peak growth of the bytes held by live tensors while ``step`` runs.

    The CPU counterpart of ``torch.cuda.max_memory_allocated``: ``torch.profiler`` with
    ``profile_memory=True`` records every allocation and free with the running total, whose
    maximum (over the total when ``step`` starts) is the peak. It does not see what the
    C allocator keeps around freed blocks (fragmentation); the resident-set column does.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    if not memory:
        return 0
    start = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
    return int(max(e["args"]["Total Allocated"] for e in memory) - start)


def _train_step_peak(config: V3Config, batch: int, queue: Any) -> None:
    """In a fresh process: peak RSS growth, peak live tensor bytes and time of one step.

    Step 1 gives the resident-set growth (``ru_maxrss`` is a high-water mark, so only the
    first step shows it), step 2 the time, step 3 (under the profiler) the live-tensor peak.
    """
    tune_cpu_allocator()  # as train() does
    torch.manual_seed(0)
    model = V3Detector(config)
    x = torch.randn(batch, config.n_channels, WINDOW)

    def step() -> None:
        model(x).sigmoid().mean().backward()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = _timed(step)
    queue.put((after - before, peak_live_bytes(step), seconds))


def train_step(config: V3Config, batch: int) -> tuple[int, int, float]:
    """(peak RSS growth bytes, peak live tensor bytes, seconds) of a training step."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_train_step_peak, args=(config, batch, queue))
    process.start()
    result: tuple[int, int, float] = queue.get()
    process.join()
    return result


def _median_best(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), min(times)


def run(seizure_transformer: Path | None, repeats: int, skip_mamba: bool, note: str) -> str:
    torch.manual_seed(0)
    v3 = V3Detector(V3Config()).eval()
    lines: list[str] = []
    printed = 0

    def progress() -> None:  # partial results stay visible when a long run is cut short
        nonlocal printed
        print("\n".join(lines[printed:]), flush=True)
        printed = len(lines)

    if note:
        lines += [f"Note: {note}", ""]

    # 1. FLOPs and parameters per stage
    flops = stage_flops(v3, n_samples=WINDOW)
    params = stage_parameters(v3)
    dead = dead_parameters(v3)
    other: nn.Module | None = None
    if seizure_transformer is not None:
        other = load_seizure_transformer(seizure_transformer).eval()
    lines += [
        "### FLOPs per 60 s window and live parameters (v3, pe=dynamic)",
        "",
        "| stage | parameters | GFLOP |",
        "|---|---:|---:|",
    ]
    for name, value in flops.items():
        count = sum(params.values()) if name == "total" else params.get(name, 0)
        lines.append(f"| {name} | {count:,} | {value / 1e9:.2f} |")
    lines += [
        "",
        f"Target: <= 30 GFLOP. Dead parameters: {', '.join(dead) if dead else 'none'}. "
        "Counted by `torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add); the SSD "
        "scan's einsums and `@` products dispatch to `bmm`/`mm` and are counted; element-wise "
        "ops, the GNN's scatter and `eigh` are not.",
    ]
    if other is not None:
        other_flops = stage_flops(other, n_samples=WINDOW)["total"]
        other_params = sum(p.numel() for p in other.parameters())
        lines.append(
            f"SeizureTransformer, same counter: {other_flops / 1e9:.2f} GFLOP, "
            f"{other_params:,} parameters."
        )

    progress()

    # 2-3. Inference at batch 2: the accelerated model, the plain one, torch.compile, kernels
    reference = matmul_gflops(repeats)
    x = torch.randn(2, 19, WINDOW, generator=torch.Generator().manual_seed(1))
    state = v3.state_dict()

    def variant(kernels: tuple[str, ...] = (), inductor: tuple[str, ...] = ()) -> nn.Module:
        """v3 with these accel kernels, and these submodules compiled by inductor."""
        model = V3Detector(V3Config()).eval()
        model.load_state_dict(state, strict=True)
        accel.accelerate(model, enabled=bool(kernels), kernels=kernels or accel.KERNELS)
        for name in inductor:
            model.get_submodule(name).compile()
        return model

    def infer(model: Callable[..., torch.Tensor], bf16: bool) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(x)

        return call

    every = accel.KERNELS
    without = {k: tuple(c for c in every if c != k) for k in every}
    mamba_kernels = ("mamba", "llvm_scan")
    fast = variant(every)
    plain = variant()
    contenders = {
        "v3 float32": infer(fast, False),
        "v3 bf16 autocast": infer(fast, True),
        "v3 float32, plain PyTorch (BGB_ACCEL=0)": infer(plain, False),
        "v3 float32, plain, torch.compile (inductor)": infer(torch.compile(plain), False),
        "v3 bf16 autocast, plain, torch.compile (inductor)": infer(torch.compile(plain), True),
        "v3 float32, Mamba2 stacks by inductor (graph kernel kept)": infer(
            variant(("graph",), ("node_stream", "edge_stream.mamba")), False
        ),
        "v3 float32, graph network by inductor (Mamba2 kernels kept)": infer(
            variant(mamba_kernels, ("gnn",)), False
        ),
        "v3 float32, without the llvm_scan kernel (numba scan)": infer(
            variant(without["llvm_scan"]), False
        ),
        "v3 bf16 autocast, without the llvm_scan kernel (numba scan)": infer(
            variant(without["llvm_scan"]), True
        ),
        "v3 float32, graph network plain (Mamba2 kernels kept)": infer(
            variant(mamba_kernels), False
        ),
        "v3 bf16 autocast, graph network plain (Mamba2 kernels kept)": infer(
            variant(mamba_kernels), True
        ),
    }
    if other is not None:
        contenders["SeizureTransformer float32"] = infer(other, False)
        contenders["SeizureTransformer bf16 autocast"] = infer(other, True)
    print(f"timing {len(contenders)} contenders (torch.compile compiles on first call)", flush=True)
    times = _interleaved(contenders, repeats)
    # probabilities: accelerated and compiled against the plain model, bf16 against float32,
    # over BF16_CHECK_BATCHES batches (the first is the timed one)
    diffs: dict[str, list[float]] = {"accel": [], "inductor": [], "bf16": []}
    compiled_plain = torch.compile(plain)
    for batch in range(BF16_CHECK_BATCHES):
        x_check = (
            x
            if batch == 0
            else torch.randn(2, 19, WINDOW, generator=torch.Generator().manual_seed(1 + batch))
        )
        with torch.no_grad():
            p_plain = plain(x_check).sigmoid()
            p32 = fast(x_check).sigmoid()
            p_inductor = compiled_plain(x_check).sigmoid()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                p16 = fast(x_check).float().sigmoid()
        diffs["accel"].append((p32 - p_plain).abs().max().item())
        diffs["inductor"].append((p_inductor - p_plain).abs().max().item())
        diffs["bf16"].append((p16 - p32).abs().max().item())
    bf16_diff = max(diffs["bf16"])
    total_flops = {"v3": flops["total"]}
    if other is not None:
        total_flops["SeizureTransformer"] = stage_flops(other, n_samples=WINDOW)["total"]
    lines += [
        "",
        "### Inference, batch 2 (no grad)",
        "",
        f"Float32 matmul 2048x2048 in this run: {reference:.1f} GFLOP/s.",
        "",
        "| model | windows/s (median) | windows/s (best) | achieved GFLOP/s (best) | of matmul |",
        "|---|---:|---:|---:|---:|",
    ]
    median = {name: statistics.median(values) for name, values in times.items()}
    v3_median = median["v3 float32"]
    for name, values in times.items():
        med, best = _median_best(values)
        model_flops = total_flops[name.split()[0]]
        achieved = 2 * model_flops / best / 1e9
        lines.append(
            f"| {name} | {2 / med:.2f} | {2 / best:.2f} | {achieved:.1f} | {achieved / reference:.0%} |"
        )

    def per_batch(key: str) -> str:
        return ", ".join(f"{d:.1e}" for d in diffs[key])

    lines += [
        "",
        "`v3 float32` and `v3 bf16 autocast` are the model as `detect`, `szcore` and "
        "`evaluate.py` run it: built plain, then `brain_go_brr.accel.accelerate()` "
        f"(kernels in effect: {', '.join(accel.applied(fast)) or 'none (numba missing)'}). "
        "Rows `without` one kernel apply the others; rows `by inductor` compile that part of "
        "the plain model with `torch.compile` (inductor, CPU) and keep the other kernels.",
        f"v3 bf16 autocast vs float32: max |probability difference| = {bf16_diff:.2e} over "
        f"{2 * BF16_CHECK_BATCHES} windows ({BF16_CHECK_BATCHES} batches of random input; per "
        f"batch {per_batch('bf16')}) "
        "(target <= 1e-2; the TCN and the decoder stay float32, `model.autocast_float32`).",
        f"Accelerated vs plain, float32: max |probability difference| per batch {per_batch('accel')}; "
        f"torch.compile vs plain: {per_batch('inductor')}. Differences above float32 rounding "
        "come from the edge stream's top-k: this untrained model has near-tied neighbour "
        "weights, and a rounding difference in a product flips which neighbour is kept.",
        f"A 24 h recording is 1440 windows of 60 s (no overlap): {1440 / (2 / v3_median) / 60:.1f} "
        "min at the v3 float32 median. Targets: v3 float32 >= 2 windows/s; bf16 as fast as "
        "SeizureTransformer (4.0 windows/s at batch 2 on the machine of the issue; compare "
        "the SeizureTransformer rows of this run).",
    ]
    if other is not None:
        ratio = median["SeizureTransformer float32"] / median["v3 bf16 autocast"]
        lines.append(
            f"v3 bf16 autocast against SeizureTransformer float32 in this run (medians): "
            f"{ratio:.2f}x its speed (target >= 1.25x)."
        )

    # each kernel against what replaces it, in the same run (keep a kernel only at >= 1.2x)
    kernel_rows = [
        ("mamba (with llvm_scan)", "v3 float32",
         "v3 float32, Mamba2 stacks by inductor (graph kernel kept)", "the stacks by inductor"),
        ("graph, float32", "v3 float32",
         "v3 float32, graph network by inductor (Mamba2 kernels kept)", "the GNN by inductor"),
        ("llvm_scan, float32", "v3 float32",
         "v3 float32, without the llvm_scan kernel (numba scan)", "numba's scan"),
        ("llvm_scan, bf16", "v3 bf16 autocast",
         "v3 bf16 autocast, without the llvm_scan kernel (numba scan)", "numba's scan"),
        ("graph, float32", "v3 float32",
         "v3 float32, graph network plain (Mamba2 kernels kept)", "the plain GNN"),
        ("graph, bf16", "v3 bf16 autocast",
         "v3 bf16 autocast, graph network plain (Mamba2 kernels kept)", "the plain GNN"),
        ("all (the whole model)", "v3 float32", "v3 float32, plain, torch.compile (inductor)",
         "torch.compile of the plain model"),
        ("all, bf16", "v3 bf16 autocast", "v3 bf16 autocast, plain, torch.compile (inductor)",
         "torch.compile of the plain model"),
    ]  # fmt: skip
    lines += [
        "",
        "### CPU kernels (brain_go_brr.accel) against torch.compile, v3 inference, batch 2",
        "",
        "| kernel | with it (windows/s) | instead | without it (windows/s) | speed-up |",
        "|---|---:|---|---:|---:|",
    ]
    for kernel, with_it, without_it, instead in kernel_rows:
        lines.append(
            f"| {kernel} | {2 / median[with_it]:.2f} | {instead} | "
            f"{2 / median[without_it]:.2f} | {median[without_it] / median[with_it]:.2f}x |"
        )
    lines += [
        "",
        "Medians of the rows above. A kernel stays in `brain_go_brr/accel` where its speed-up "
        "over what would run instead is >= 1.2x (docs/model.md says which stayed).",
    ]

    progress()

    # 4. Training step at batch 4
    lines += [
        "",
        "### Training step (forward + backward), batch 4, float32",
        "",
        "| model settings | windows/s | peak tensor memory per window | peak RSS growth per window |",
        "|---|---:|---:|---:|",
    ]
    settings = {
        "mamba_recompute=false (keep every activation)": V3Config(mamba_recompute=False),
        "default (mamba_recompute=true)": V3Config(),
        "checkpointing=true": V3Config(checkpointing=True),
    }
    for label, config in settings.items():
        rss_bytes, live_bytes, seconds = train_step(config, batch=4)
        lines.append(
            f"| {label} | {4 / seconds:.3f} | {live_bytes / 4 / 1e9:.3f} GB | "
            f"{rss_bytes / 4 / 1e9:.3f} GB |"
        )
        progress()
    lines += [
        "",
        "Memory per window = measured at batch 4, divided by 4 (GB = 1e9 bytes). Peak tensor "
        "memory: the largest growth of the bytes held by live tensors during one step, from "
        "`torch.profiler(profile_memory=True)` (the CPU counterpart of "
        "`torch.cuda.max_memory_allocated`, which is what a GPU's memory limit is about). "
        "Peak RSS growth: growth of the resident set of a fresh process during its first "
        "step; it also counts freed blocks the C allocator keeps (fragmentation). Targets: "
        "<= 1 GB per window; < 0.3 GB with checkpointing.",
    ]

    progress()

    # 5. PE stage: dynamic vs semi
    pair_weights = torch.rand(2, 171, 960, generator=torch.Generator().manual_seed(2))
    adjacency = topk_adjacency(pairs_to_dense(pair_weights, 19), k=3)
    dynamic, semi = LaplacianPE(19, 16, "dynamic"), LaplacianPE(19, 16, "semi", 5)
    pe_times = _interleaved(
        {"dynamic": lambda: dynamic(adjacency), "semi": lambda: semi(adjacency)}, max(repeats, 15)
    )
    dyn_median, semi_median = (statistics.median(pe_times[k]) for k in ("dynamic", "semi"))
    lines += [
        "",
        "### Laplacian PE stage, batch 2 (1920 graphs of 19 nodes)",
        "",
        "| pe | median ms | graphs decomposed |",
        "|---|---:|---:|",
        f"| dynamic | {dyn_median * 1e3:.1f} | 1920 |",
        f"| semi (interval 5) | {semi_median * 1e3:.1f} | 384 |",
        "",
        f"Speed-up: {dyn_median / semi_median:.1f}x (target >= 3x).",
    ]

    progress()

    # 6. Mamba2 vs Hugging Face
    if not skip_mamba:
        from mamba_vs_hf import run as mamba_vs_hf

        lines += ["", "### Mamba2 block vs Hugging Face (from benchmarks/mamba_vs_hf.py)", ""]
        lines.append(mamba_vs_hf(repeats=repeats))
    progress()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seizure-transformer",
        type=Path,
        default=None,
        help="local copy of SeizureTransformer's wu_2025/src/wu_2025/architecture.py",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--skip-mamba", action="store_true", help="skip the Mamba2-vs-HF part")
    parser.add_argument("--note", default="", help="a remark printed above the results")
    args = parser.parse_args(argv)
    from _common import write_section

    tune_cpu_allocator()  # as train() and evaluate() do: brain_go_brr/runtime.py
    markdown = run(args.seizure_transformer, args.repeats, args.skip_mamba, args.note)
    if args.seizure_transformer is not None:  # BENCHMARKS.md must not hold this machine's paths
        sys.argv = [
            "PATH/TO/architecture.py" if arg == str(args.seizure_transformer) else arg
            for arg in sys.argv
        ]
    write_section("bench_model", "V3 detector (issue 3)", markdown)


if __name__ == "__main__":
    main()
