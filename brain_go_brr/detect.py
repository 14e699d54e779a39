"""``brain-go-brr detect EDF --ckpt CKPT``: seizure events of one recording as a csv_bi file.

The recording goes through the same chain as the training cache (19 channels, common-average
reference, 256 Hz, band-pass and notch, robust scaling; ``PreprocessConfig`` defaults), the
detector runs over overlapping 60 s windows, the windows are stitched into one 256 Hz
probability track and post-processed (``PostConfig`` defaults unless ``--tau-on/--tau-off``).
The output is a hypothesis ``.csv_bi`` that NEDC EEG Eval v6.0.0 and ``brain-go-brr score``
read, with each event's mean probability as its confidence. No annotation file is needed.

The model is rebuilt from the config stored in the checkpoint (or ``--model NAME`` from
``conf/model/``), loaded with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from brain_go_brr.annotations import Event

#: Window length the detector was trained on (60 s at 256 Hz).
WINDOW_SAMPLES = 15360


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("edf", type=Path, help="the recording (.edf)")
    parser.add_argument("--ckpt", type=Path, required=True, help="training checkpoint (.ckpt)")
    parser.add_argument(
        "--out", type=Path, default=None, help="hypothesis file (default: EDF name + .hyp.csv_bi)"
    )
    parser.add_argument(
        "--model", default=None, help="conf/model/ name (default: the config in the checkpoint)"
    )
    parser.add_argument("--stride-s", type=float, default=30.0, help="window stride (s)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--tau-on", type=float, default=None, help="hysteresis start threshold")
    parser.add_argument("--tau-off", type=float, default=None, help="hysteresis stop threshold")
    parser.add_argument("--probs", type=Path, default=None, help="also save the (n,) track (.npy)")


def _model_config(name: str | None) -> dict[str, object] | None:
    if name is None:
        return None
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from brain_go_brr.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("eval", overrides=[f"model={name}", "hardware=cpu"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)
    return {str(k): v for k, v in model.items()}


def detect(
    edf: Path,
    ckpt: Path,
    *,
    model: str | None = None,
    stride_s: float = 30.0,
    batch_size: int = 8,
    tau_on: float | None = None,
    tau_off: float | None = None,
) -> tuple[np.ndarray, list[Event]]:
    """``(prob (n_samples,) float32 at 256 Hz, events)`` of one EDF recording."""
    import dataclasses

    import torch

    from brain_go_brr.data.edf import read_edf
    from brain_go_brr.data.preprocess import PreprocessConfig, preprocess_signals
    from brain_go_brr.evaluation.evaluate import predict_record
    from brain_go_brr.post import PostConfig, postprocess
    from brain_go_brr.training.train import load_detector

    cfg = PreprocessConfig()
    recording = read_edf(edf, cfg.aliases, cfg.interpolate_missing)
    try:
        signals = preprocess_signals(recording.data_uv, recording.sfreq, cfg)  # (19, n)
    except ValueError as exc:
        raise ValueError(f"{edf}: {exc}") from None
    detector = load_detector(ckpt, _model_config(model))
    stride = round(stride_s * cfg.target_sfreq)
    if not 0 < stride <= WINDOW_SAMPLES:
        raise ValueError(f"--stride-s {stride_s}: must be in (0, 60] s so windows cover the record")
    prob = predict_record(
        detector, signals, WINDOW_SAMPLES, stride, batch_size, torch.device("cpu")
    )
    post = PostConfig()
    if tau_on is not None or tau_off is not None:
        post = dataclasses.replace(
            post,
            tau_on=post.tau_on if tau_on is None else tau_on,
            tau_off=post.tau_off if tau_off is None else tau_off,
        )
    return prob, postprocess(prob, post)


def run(args: argparse.Namespace) -> int:
    from brain_go_brr.annotations import write_csv_bi

    prob, events = detect(
        args.edf,
        args.ckpt,
        model=args.model,
        stride_s=args.stride_s,
        batch_size=args.batch_size,
        tau_on=args.tau_on,
        tau_off=args.tau_off,
    )
    out = args.out or args.edf.with_name(args.edf.stem + ".hyp.csv_bi")
    write_csv_bi(out, events, prob.size / 256.0)
    if args.probs is not None:
        from brain_go_brr.io import atomic_save_npy

        atomic_save_npy(args.probs, prob)
    print(f"{args.edf.name}: {len(events)} seizure event(s) -> {out}")
    for e in events:
        print(f"  {e.start_s:9.2f} - {e.stop_s:9.2f} s  mean p {e.confidence:.3f}")
    return 0
