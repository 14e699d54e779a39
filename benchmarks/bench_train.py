"""Training throughput at the cpu preset: windows/s, peak memory, the data loader's share.

For each model (``v3_tiny``, ``v3``) a separate process trains a few steps on the synthetic
corpus (60 s windows, batch size of the cpu preset) and reports:

- windows/s: batch size / mean wall time of a training step (forward, backward, optimizer),
  steps after the first (warm-up) only;
- peak memory: the process's peak resident set size (``ru_maxrss``), everything included;
- loader share: time between steps (the loader's ``next``, plus a little Lightning
  bookkeeping: an upper bound) / (that + step).

Each model is measured with ``trainer.deterministic`` true (the default) and false: the
difference is what bit-identical runs cost.

Usage: ``python benchmarks/bench_train.py [--steps N] [--models v3_tiny v3]``
(writes the ``train`` section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section


class _StepTimer:
    """Wall time of each training step (batch start to end) and of the gap before it.

    The gap (previous batch end to this batch start) holds the loader's ``next`` plus a
    little Lightning bookkeeping, so the loader share derived from it is an upper bound.
    """

    def __init__(self) -> None:
        import lightning as L

        timer = self

        class Callback(L.Callback):
            def on_train_batch_start(self, *args: Any) -> None:
                now = time.perf_counter()
                if timer.last_end is not None:
                    timer.fetch.append(now - timer.last_end)
                timer.start = now

            def on_train_batch_end(self, *args: Any) -> None:
                timer.last_end = time.perf_counter()
                timer.step.append(timer.last_end - timer.start)

        self.callback = Callback()
        self.start = 0.0
        self.last_end: float | None = None
        self.step: list[float] = []
        self.fetch: list[float] = []


def measure(model: str, steps: int, deterministic: bool) -> dict[str, float]:
    """Train ``steps`` + 1 steps of ``model`` at the cpu preset in this process."""
    from hydra import compose, initialize_config_dir

    from brain_go_brr.paths import conf_dir

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
        "+trainer.enable_checkpointing=false",
        "~callbacks",
        f"paths.output_dir={out}",
        f"trainer.deterministic={str(deterministic).lower()}",
    ]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    # The module, not the function of the same name that brain_go_brr.training exports.
    train_mod: Any = importlib.import_module("brain_go_brr.training.train")
    timer = _StepTimer()
    build = train_mod.build_callbacks
    train_mod.build_callbacks = lambda c: [*build(c), timer.callback]
    train_mod.train(cfg)
    step = timer.step[1:]  # the first step is warm-up
    fetch = timer.fetch  # gaps before steps 2.. (the first fetch is before any timing)
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
    parser.add_argument("--deterministic", choices=("true", "false"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.deterministic == "true")))
        return
    load_at_start = os.getloadavg()[0]
    rows = []
    for model in args.models:
        for deterministic in ("true", "false"):
            env = {**os.environ, "WANDB_MODE": "offline"}
            proc = subprocess.run(
                [sys.executable, __file__, "--one", model, "--steps", str(args.steps),
                 "--deterministic", deterministic],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"bench_train: {model} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((model, deterministic, result))
            print(model, deterministic, result, flush=True)
    table = [
        "| model | deterministic | batch | steps timed | s/step | windows/s | peak RSS (GiB) "
        "| loader share | cost of determinism |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    step_of = {(m, d): r["step_s"] for m, d, r in rows}
    for model, deterministic, r in rows:
        cost = ""
        if deterministic == "true":
            cost = f"{100 * (r['step_s'] / step_of[(model, 'false')] - 1):+.1f} % s/step"
        table.append(
            f"| {model} | {deterministic} | {r['batch_size']} | {r['steps']} | {r['step_s']:.2f} "
            f"| {r['windows_per_s']:.2f} | {r['peak_rss_gib']:.2f} | "
            f"{100 * r['loader_share']:.2f} % | {cost} |"
        )
    body = "\n".join(table) + (
        "\n\nTraining at the cpu preset (60 s windows, fp32, `num_workers=0`), synthetic corpus, "
        "with `trainer.deterministic` true (the default: bit-identical runs) and false. "
        "s/step: forward + backward + AdamW of one batch, mean over the timed steps (the first "
        "step is warm-up and not timed). Peak RSS: the whole training process. Loader share: "
        "time between steps (loader `next` plus Lightning bookkeeping, an upper bound) / (that "
        f"+ stepping); target < 5 %. Load average (1 min) when the benchmark started: "
        f"{load_at_start:.2f} on {os.cpu_count()} cores."
    )
    write_section("train", "Training throughput (cpu preset)", body)


if __name__ == "__main__":
    main()
