"""Training throughput at the cpu preset: windows/s, peak memory, the data loader's share.

For each model (``v3_tiny``, ``v3``) a separate process trains a few steps on the synthetic
corpus (60 s windows, batch size of the cpu preset) with Lightning's SimpleProfiler, and
reports:

- windows/s: batch size / mean wall time of a training step (forward, backward, optimizer),
  steps after the first (warm-up) only;
- peak memory: the process's peak resident set size (``ru_maxrss``), everything included;
- loader share: time spent fetching the next batch / (fetch + step).

Usage: ``python benchmarks/bench_train.py [--steps N] [--models v3_tiny v3]``
(writes the ``train`` section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section


def measure(model: str, steps: int) -> dict[str, float]:
    """Train ``steps`` + 1 steps of ``model`` at the cpu preset in this process."""
    from hydra import compose, initialize_config_dir
    from lightning.pytorch.profilers import SimpleProfiler
    from omegaconf import open_dict

    from brain_go_brr.paths import conf_dir
    from brain_go_brr.training import train as train_fn

    out = Path(tempfile.mkdtemp(prefix="bench_train_"))
    overrides = [
        "hardware=cpu",
        f"model={model}",
        "logger=none",
        "data.synthetic.n_patients=6",
        "data.synthetic.hours=0.5",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={steps + 1}",
        "trainer.limit_val_batches=0",
        "trainer.enable_checkpointing=false",
        "callbacks=null",
        f"paths.output_dir={out}",
    ]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    profiler = SimpleProfiler()
    with open_dict(cfg):
        cfg.trainer.profiler = profiler  # type: ignore[assignment]
    train_fn(cfg)
    durations = profiler.recorded_durations
    fetch = next(v for k, v in durations.items() if k.endswith("train_dataloader_next"))[1:]
    step = durations["run_training_batch"][1:]
    batch = int(cfg.data.batch_size)
    return {
        "batch_size": batch,
        "steps": len(step),
        "step_s": float(np.mean(step)),
        "windows_per_s": batch / float(np.mean(step)),
        "loader_share": float(np.sum(fetch) / (np.sum(fetch) + np.sum(step))),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model")
    parser.add_argument("--models", nargs="+", default=["v3_tiny", "v3"])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: measure one model
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps)))
        return
    rows = []
    for model in args.models:
        env = {**os.environ, "WANDB_MODE": "offline"}
        proc = subprocess.run(
            [sys.executable, __file__, "--one", model, "--steps", str(args.steps)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"bench_train: {model} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((model, result))
        print(model, result, flush=True)
    table = [
        "| model | batch | steps timed | s/step | windows/s | peak RSS (GiB) | loader share |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in rows:
        table.append(
            f"| {model} | {r['batch_size']} | {r['steps']} | {r['step_s']:.2f} | "
            f"{r['windows_per_s']:.2f} | {r['peak_rss_gib']:.2f} | {100 * r['loader_share']:.2f} % |"
        )
    body = "\n".join(table) + (
        "\n\nTraining at the cpu preset (60 s windows, fp32, `num_workers=0`), synthetic corpus. "
        "s/step: forward + backward + AdamW of one batch, mean over the timed steps (the first "
        "step is warm-up and not timed). Peak RSS: the whole training process. Loader share: "
        "time fetching batches / (fetching + stepping); target < 5 %. The machine was shared "
        "with other jobs while measuring, so times are upper bounds."
    )
    write_section("train", "Training throughput (cpu preset)", body)


if __name__ == "__main__":
    main()
