"""``make gpu-check``: the GPU acceptance check, one script for the first GPU lent.

Without CUDA it says so, lists what it would check, and exits 0 (the test suite runs that
branch). With CUDA it runs every check below, each on its own (a failing check is reported
with its error and the others still run), prints a table, writes the ``gpu_check`` section
of BENCHMARKS.md (device, torch and CUDA versions, the command) and exits 1 if any check
failed:

1. ``mamba2``: our chunked SSD scan on CUDA against the float64 sequential scan (forward
   and gradients), our Mamba2 block on CUDA against the same block on the CPU, in float32
   and under bf16 autocast; with ``mamba_ssm`` importable, its kernel against ours on the
   same weights.
2. ``train <preset>``: full v3 training steps with each preset's own settings (rtx4090:
   fp32, batch 4, ``pe=semi``; a100 / h100: bf16-mixed, batch 64, ``pe=dynamic``):
   windows/s, ``torch.cuda.max_memory_allocated`` per window, finite loss and gradients,
   and the Laplacian PE stage's share of the step.
3. ``inference``: v3 at batch 64 under bf16, windows/s, and the largest probability
   difference against float32.
4. ``train.py``: a short run on the synthetic corpus on the GPU (validation, checkpoint),
   a run killed mid-epoch and resumed, compared with the uninterrupted one.
5. ``evaluate.py`` with that checkpoint on the GPU, and ``detect --device cuda``.

On the lent machine (torch, PyG, Lightning there; the rest carried as wheels, see
``benchmarks/gpu_wheels.sh``)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. make gpu-check GPU_PY=python3

Run: ``python benchmarks/gpu_check.py [--quick]`` (``--quick``: fewer steps)
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHECKS = (
    "mamba2: SSD scan on CUDA vs the float64 sequential scan (forward, gradients); the "
    "block on CUDA vs the CPU in fp32 and bf16 autocast; mamba_ssm's kernel vs ours if it imports",
    "train rtx4090: v3, fp32, batch 4, pe=semi: windows/s, memory per window, finite "
    "loss and gradients, PE share of the step",
    "train a100/h100: v3, bf16-mixed, batch 64, pe=dynamic: the same figures",
    "inference: v3 at batch 64 under bf16, windows/s, largest probability difference vs fp32",
    "train.py on the GPU: a short synthetic run with validation and checkpoints; a run "
    "killed mid-epoch and resumed, compared with the uninterrupted one",
    "evaluate.py with that checkpoint on the GPU, and detect --device cuda",
)

Row = tuple[str, str, str]  # (check, status, what was measured)


def rel_err(a: Any, b: Any) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


# ----------------------------------------------------------------------------- 1. Mamba2


def check_mamba2(quick: bool) -> list[Row]:
    import torch

    from brain_go_brr.models import mamba2 as m2
    from brain_go_brr.models.ssd import ssd_scan, ssd_scan_reference

    rows: list[Row] = []
    g = torch.Generator().manual_seed(0)
    b, length, h, p, n = 2, 300, 8, 8, 16
    x = torch.randn(b, length, h, p, generator=g)
    dt = torch.rand(b, length, h, generator=g) * 0.1 + 0.01
    a = -torch.rand(h, generator=g) - 0.5
    bb, cc = torch.randn(b, length, 1, n, generator=g), torch.randn(b, length, 1, n, generator=g)
    d = torch.randn(h, generator=g)
    ref_in = [t.double().requires_grad_(True) for t in (x, dt, a, bb, cc, d)]
    y_ref = ssd_scan_reference(ref_in[0], ref_in[1], ref_in[2], ref_in[3], ref_in[4], ref_in[5])
    grad_out = torch.randn(y_ref.shape, generator=g).double()
    (y_ref * grad_out).sum().backward()
    cuda_in = [t.cuda().requires_grad_(True) for t in (x, dt, a, bb, cc, d)]
    y = ssd_scan(cuda_in[0], cuda_in[1], cuda_in[2], cuda_in[3], cuda_in[4], cuda_in[5], 64)
    (y * grad_out.float().cuda()).sum().backward()
    fwd = rel_err(y.cpu(), y_ref)
    grads = max(rel_err(c.grad.cpu(), r.grad) for c, r in zip(cuda_in, ref_in, strict=True))  # type: ignore[union-attr]
    ok = fwd < 1e-4 and grads < 1e-4
    rows.append(("mamba2 scan fp32", "ok" if ok else "FAIL",
                 f"rel. error vs float64: forward {fwd:.1e}, gradients {grads:.1e}"))  # fmt: skip

    torch.manual_seed(0)
    cpu_block = m2.Mamba2(
        64, m2.Mamba2Config(d_state=16, headdim=8, chunk_size=64, backend="torch")
    )
    gpu_block = m2.Mamba2(
        64, m2.Mamba2Config(d_state=16, headdim=8, chunk_size=64, backend="torch")
    ).cuda()
    gpu_block.load_state_dict(cpu_block.state_dict())
    u = torch.randn(4, 300, 64, generator=g)
    y_cpu = cpu_block(u)
    y_gpu = gpu_block(u.cuda())
    fp32 = rel_err(y_gpu.detach().cpu(), y_cpu.detach())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y_bf16 = gpu_block(u.cuda())
    bf16 = rel_err(y_bf16.float().detach().cpu(), y_cpu.detach())
    grad_cpu = torch.autograd.grad(y_cpu.square().sum(), cpu_block.A_log)[0]
    grad_gpu = torch.autograd.grad(gpu_block(u.cuda()).square().sum(), gpu_block.A_log)[0]
    grad = rel_err(grad_gpu.cpu(), grad_cpu)
    ok = fp32 < 1e-4 and grad < 1e-3 and bf16 < 3e-2
    rows.append(("mamba2 block", "ok" if ok else "FAIL",
                 f"CUDA vs CPU: fp32 {fp32:.1e}, A_log gradient {grad:.1e}; bf16 autocast {bf16:.1e}"))  # fmt: skip

    if m2._mamba_ssm_kernel() is None:
        rows.append(
            ("mamba_ssm kernel", "skipped", "mamba_ssm does not import (pip install .[gpu])")
        )
    else:
        kernel = m2.Mamba2(
            64, m2.Mamba2Config(d_state=16, headdim=8, chunk_size=64, backend="cuda")
        ).cuda()
        kernel.load_state_dict(cpu_block.state_dict())
        y_kernel = kernel(u.cuda())
        err = rel_err(y_kernel.detach().cpu(), y_cpu.detach())
        rows.append(("mamba_ssm kernel", "ok" if err < 1e-3 else "FAIL",
                     f"mamba_ssm vs ours: {err:.1e}"))  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- 2-3. v3


#: The PE schedule each preset suggests (conf/hardware/*.yaml); the check runs it.
PRESET_PE = {"rtx4090": "semi", "a100": "dynamic", "h100": "dynamic"}


def _v3(preset: str) -> tuple[Any, Any]:
    """(detector, composed train config) of model=v3 under a hardware preset and its
    suggested PE schedule."""
    import hydra
    from hydra import compose, initialize_config_dir

    from brain_go_brr.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"hardware={preset}", f"pe={PRESET_PE[preset]}", "model=v3", "logger=none"],
        )
    return hydra.utils.instantiate(cfg.model), cfg


def check_train_preset(preset: str, quick: bool) -> list[Row]:
    import torch

    from brain_go_brr.inference import device_and_autocast

    torch.manual_seed(0)
    detector, cfg = _v3(preset)
    detector = detector.cuda().train()
    batch = int(cfg.data.batch_size)
    _, dtype = device_and_autocast("cuda", str(cfg.trainer.precision))
    opt = torch.optim.AdamW(detector.parameters(), lr=1e-4)
    x = torch.randn(batch, 19, 15360).cuda()
    y = (torch.rand(batch, 15360) < 0.1).float().cuda()
    pe_time = [0.0]
    starts: list[Any] = []

    def pre(*_: Any) -> None:
        torch.cuda.synchronize()
        starts.append(time.perf_counter())

    def post(*_: Any) -> None:
        torch.cuda.synchronize()
        pe_time[0] += time.perf_counter() - starts.pop()

    hooks = [detector.lpe.register_forward_pre_hook(pre), detector.lpe.register_forward_hook(post)]
    steps, warm = (3, 1) if quick else (6, 2)
    torch.cuda.reset_peak_memory_stats()
    times, finite = [], True
    for step in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pe_before = pe_time[0]
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            logits = detector(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        finite &= bool(torch.isfinite(loss)) and all(
            torch.isfinite(p.grad).all() for p in detector.parameters() if p.grad is not None
        )
        opt.step()
        torch.cuda.synchronize()
        if step >= warm:
            times.append((time.perf_counter() - t0, pe_time[0] - pe_before))
    for hook in hooks:
        hook.remove()
    step_s = sum(t for t, _ in times) / len(times)
    pe_share = sum(p for _, p in times) / sum(t for t, _ in times)
    mem_gib = torch.cuda.max_memory_allocated() / 2**30
    limit = 24.0 if preset == "rtx4090" else 80.0
    ok = finite and mem_gib <= limit
    return [(f"train {preset}", "ok" if ok else "FAIL",
             f"{cfg.trainer.precision}, batch {batch}, pe {cfg.model.pe.mode}: {batch / step_s:.1f} "
             f"windows/s, {mem_gib / batch:.2f} GiB per window ({mem_gib:.1f} GiB, card "
             f"{limit:.0f}), PE {100 * pe_share:.0f} % of a step, loss and gradients "
             f"{'finite' if finite else 'NOT finite'}")]  # fmt: skip


def check_inference(quick: bool) -> list[Row]:
    import torch

    torch.manual_seed(0)
    detector, _ = _v3("h100")
    detector = detector.cuda().eval()
    x = torch.randn(64, 19, 15360).cuda()
    with torch.inference_mode():
        p32 = torch.sigmoid(detector(x).float())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            p16 = torch.sigmoid(detector(x).float())
        rounds = 2 if quick else 5
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(rounds):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                detector(x)
        torch.cuda.synchronize()
    rate = 64 * rounds / (time.perf_counter() - t0)
    diff = float((p32 - p16).abs().max())
    return [("inference bf16", "ok" if diff < 0.05 else "FAIL",
             f"batch 64: {rate:.1f} windows/s; largest |p_bf16 - p_fp32| {diff:.1e}")]  # fmt: skip


# ----------------------------------------------------------------------------- 4-5. pipeline


def check_pipeline(quick: bool) -> list[Row]:
    import torch
    from hydra import compose, initialize_config_dir

    from brain_go_brr.hardware import detect_preset
    from brain_go_brr.paths import conf_dir

    train_mod: Any = importlib.import_module("brain_go_brr.training.train")
    rows: list[Row] = []
    base = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    preset = detect_preset()
    common = [
        f"hardware={preset}", "model=v3_tiny", "logger=none",
        f"data.root={base / 'corpus'}", f"data.cache_dir={base / 'cache'}",
        "data.synthetic.n_patients=4", "data.synthetic.hours=0.3", "data.synthetic.seed=5",
        "data.batch_size=8", "data.num_workers=2", "data.eval_stride_s=60",
        "trainer.max_epochs=2", "trainer.limit_train_batches=4",
        "callbacks.last_checkpoint_mid_epoch.every_n_train_steps=3", "module.plots_dir=null",
    ]  # fmt: skip

    def compose_run(name: str, extra: list[str]) -> Any:
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            return compose("train", overrides=[*common, f"paths.output_dir={base / name}", *extra])

    t0 = time.perf_counter()
    full = train_mod.train(compose_run("full", []))
    rows.append(("train.py", "ok" if full["best_ckpt_path"] else "FAIL",
                 f"{preset} preset, 2 epochs in {time.perf_counter() - t0:.0f} s, val/auroc "
                 f"{full.get('val/auroc', float('nan')):.3f}, checkpoints written"))  # fmt: skip

    import lightning as L

    class Crash(L.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step == 5:
                raise KeyboardInterrupt

    build = train_mod.build_callbacks
    train_mod.build_callbacks = lambda c: [*build(c), Crash()]
    try:
        train_mod.train(compose_run("killed", []))
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        train_mod.build_callbacks = build
    resumed = train_mod.train(compose_run("killed", ["ckpt_path=last"]))
    a = torch.load(full["last_ckpt_path"], weights_only=True)["state_dict"]
    b = torch.load(resumed["last_ckpt_path"], weights_only=True)["state_dict"]
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    deterministic = bool(compose_run("x", []).trainer.deterministic)
    rows.append(("resume", "ok" if diff < 1e-2 else "FAIL",
                 f"killed at step 5 and resumed: largest weight difference {diff:.1e} "
                 f"(trainer.deterministic={deterministic} on this preset)"))  # fmt: skip

    from brain_go_brr.evaluation.evaluate import evaluate

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        eval_cfg = compose("eval", overrides=[
            f"hardware={preset}", "model=v3_tiny", f"data.root={base / 'corpus'}",
            f"data.cache_dir={base / 'cache'}", "data.synthetic.n_patients=4",
            "data.synthetic.hours=0.3", "data.synthetic.seed=5", "data.eval_stride_s=60",
            f"ckpt_path={full['best_ckpt_path']}", f"out_dir={base / 'eval'}", "split=dev",
        ])  # fmt: skip
    t0 = time.perf_counter()
    metrics = evaluate(eval_cfg)
    rows.append(("evaluate.py", "ok", f"dev on {preset}: {metrics['n_records']} records in "
                 f"{time.perf_counter() - t0:.0f} s, AUROC {metrics['auroc']}"))  # fmt: skip

    from brain_go_brr.cli import main as cli

    edf = next((base / "corpus").rglob("*.edf"))
    status = cli(["detect", str(edf), "--ckpt", full["best_ckpt_path"], "--device", "cuda",
                  "--out", str(base / "detect.tsv")])  # fmt: skip
    rows.append(("detect --device cuda", "ok" if status == 0 else "FAIL", f"exit status {status}"))
    return rows


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine; nothing was run. On a GPU it checks:")
        for item in CHECKS:
            print(f"  - {item}")
        return 0
    checks: list[tuple[str, Callable[[], list[Row]]]] = [
        ("mamba2", lambda: check_mamba2(args.quick)),
        ("train rtx4090", lambda: check_train_preset("rtx4090", args.quick)),
        ("train a100", lambda: check_train_preset("a100", args.quick)),
        ("inference", lambda: check_inference(args.quick)),
        ("pipeline", lambda: check_pipeline(args.quick)),
    ]
    rows: list[Row] = []
    for name, check in checks:
        t0 = time.perf_counter()
        try:
            rows += check()
        except Exception as exc:  # one failing check never hides the others
            traceback.print_exc()
            rows.append((name, "FAIL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
        print(f"gpu-check: {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
        torch.cuda.empty_cache()
    table = "\n".join(
        ["| check | status | measured |", "|---|---|---|"]
        + [f"| {c} | {s} | {m} |" for c, s, m in rows]
    )
    print(table)
    from _common import write_section

    cuda = torch.version.cuda or "?"
    body = (
        f"Device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {cuda}, "
        f"Python {platform.python_version()}.\n\n{table}\n"
    )
    write_section("gpu_check", "GPU acceptance check (make gpu-check)", body)
    return 0 if all(s != "FAIL" for _, s, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
