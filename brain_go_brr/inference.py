"""Running a trained detector: the one module for ``evaluate.py``, ``detect`` and ``szcore``.

1. :func:`load_checkpoint` reads a training checkpoint with ``torch.load(weights_only=True)``
   (no code runs from the file) and rebuilds the detector from the model config stored in
   it, with the preprocessing and post-processing the training run used. An unreadable or
   foreign file raises :class:`CheckpointError`, a model that does not fit
   :class:`CheckpointMismatchError` naming the missing, unexpected and mis-shaped keys.
   The detector comes with the CPU inference kernels applied
   (:func:`brain_go_brr.accel.accelerate`; ``BGB_ACCEL=0`` or ``accelerate=False``: plain).
2. :func:`device_and_autocast` turns ``auto | cpu | cuda`` and a Lightning precision
   (``32-true``, ``bf16-mixed``, ...) into a device and an autocast dtype;
   :func:`preset_precision` gives the precision of the hardware preset of a device.
3. :func:`predict_record` runs the detector over a whole preprocessed recording in
   overlapping 60 s windows (the last aligned to the end, a short recording zero-padded)
   and stitches them into one 256 Hz probability track; validation during training, which
   gets its windows batch by batch from the DataModule, stitches them with the same
   :class:`brain_go_brr.post.stitch.RecordAccumulator`, fed one batch at a time.
4. The operating point: ``evaluate.py`` on the dev split writes the post-processing of a
   chosen ``sens @ k FA/24h`` point beside the checkpoint
   (:func:`save_operating_point`, ``best.ckpt`` -> ``best.operating_point.json``, bound to
   the checkpoint by its SHA-256); :func:`resolve_post` makes it the default of ``detect``
   and ``szcore``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brain_go_brr.config import plain
from brain_go_brr.data.channels import N_CHANNELS
from brain_go_brr.data.preprocess import PreprocessConfig
from brain_go_brr.io import atomic_write_json
from brain_go_brr.post import PostConfig, stitch_windows

#: Window length the detector is trained on: 60 s at 256 Hz.
WINDOW_SAMPLES = 15360
OPERATING_POINT_SUFFIX = ".operating_point.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose weights do not fit the model config (keys or shapes differ)."""


@dataclass
class LoadedCheckpoint:
    """A detector ready for inference and what the training run knew about its data."""

    path: Path
    detector: nn.Module  # eval mode, on the CPU
    model_config: dict[str, Any]
    preprocess: PreprocessConfig  # the training run's preprocessing (or the defaults)
    post: PostConfig  # the training run's post-processing
    notes: list[str] = field(default_factory=list)  # what fell back to a default, and why


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint file; training writes runs/<run_name>/checkpoints/"
            "best.ckpt (pass --ckpt or set BGB_CHECKPOINT)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        text = str(exc).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({first}); the file is truncated or not a "
            "torch checkpoint: copy it again from the training run"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        keys = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint)
        raise CheckpointError(
            f"{path}: not a brain-go-brr training checkpoint (no 'state_dict'; found {keys}); "
            "pass a checkpoint written by train.py"
        )
    return checkpoint


def load_checkpoint(
    ckpt_path: str | Path,
    model_cfg: Mapping[str, Any] | None = None,
    accelerate: bool | None = None,
) -> LoadedCheckpoint:
    """The detector of a training checkpoint (see the module docstring).

    ``model_cfg`` is a ``conf/model/*.yaml`` config (with ``_target_``); ``None`` uses the
    model config stored in the checkpoint. ``accelerate``: apply the CPU inference kernels
    (:func:`brain_go_brr.accel.accelerate`); ``None`` follows its ``BGB_ACCEL`` switch (on
    by default), ``False`` returns the plain model.
    """
    import hydra

    from brain_go_brr import accel

    path = Path(ckpt_path)
    checkpoint = _read(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    if model_cfg is None:
        model_cfg = hparams.get("model")
        if not model_cfg:
            raise CheckpointMismatchError(
                f"{path}: holds no model config; pass the model config (e.g. model=v3_tiny)"
            )
    detector: nn.Module = hydra.utils.instantiate(plain(model_cfg))
    prefix = "detector."
    weights = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    expected = detector.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(weights) & set(expected)
        if weights[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:

        def few(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")

        raise CheckpointMismatchError(
            f"{path} does not match the model config: "
            f"missing {len(missing)} [{few(missing)}]; unexpected {len(unexpected)} "
            f"[{few(unexpected)}]; shape differs {len(shapes)} [{few(shapes)}]. Use the "
            "model=... (and pe=...) the checkpoint was trained with (stored in its "
            "hyper_parameters['model'], used when model_cfg is None)"
        )
    detector.load_state_dict(weights, strict=True)
    notes = []
    if hparams.get("preprocess"):
        preprocess = PreprocessConfig.from_dict(hparams["preprocess"])
    else:
        preprocess = PreprocessConfig()
        notes.append(
            f"{path.name} does not record its preprocessing (trained before it was stored); "
            "using the default preprocessing"
        )
    post_values = hparams.get("post") or {}
    known = {f.name for f in dataclasses.fields(PostConfig)}
    post = PostConfig(**{k: v for k, v in post_values.items() if k in known})
    return LoadedCheckpoint(
        path=path,
        detector=accel.accelerate(detector.eval(), enabled=accelerate),
        model_config=dict(plain(model_cfg)),
        preprocess=preprocess,
        post=post,
        notes=notes,
    )


def save_checkpoint(
    path: str | Path,
    detector: nn.Module,
    model_config: Mapping[str, Any],
    preprocess: PreprocessConfig | None = None,
    post: PostConfig | None = None,
) -> None:
    """Write a detector as an inference checkpoint :func:`load_checkpoint` reads: the keys a
    training checkpoint has (``state_dict`` with ``detector.`` names, ``hyper_parameters``
    with ``model``, ``preprocess``, ``post``), without optimizer state. Atomic."""
    from brain_go_brr.io import atomic_open

    hparams = {
        "model": dict(plain(model_config)),
        "preprocess": json.loads(json.dumps(dataclasses.asdict(preprocess or PreprocessConfig()))),
        "post": dataclasses.asdict(post or PostConfig()),
    }
    state = {f"detector.{k}": v.detach().cpu() for k, v in detector.state_dict().items()}
    with atomic_open(path, "wb") as fh:
        torch.save({"state_dict": state, "hyper_parameters": hparams}, fh)


def load_detector(
    ckpt_path: str | Path,
    model_cfg: Mapping[str, Any] | None = None,
    accelerate: bool | None = None,
) -> nn.Module:
    """Only the detector of :func:`load_checkpoint` (eval mode, on the CPU)."""
    return load_checkpoint(ckpt_path, model_cfg, accelerate).detector


# ----------------------------------------------------------------------------- device


_AUTOCAST = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16,
             "16-mixed": torch.float16, "16-true": torch.float16}  # fmt: skip


def device_and_autocast(
    accelerator: str = "auto", precision: str = "32-true"
) -> tuple[torch.device, torch.dtype | None]:
    """Device and autocast dtype for ``accelerator`` (``auto``, ``cpu``, ``cuda``/``gpu``) and
    a Lightning ``precision``; float16 is a GPU feature and falls back to float32 on a CPU.

    Raises ``RuntimeError`` when CUDA is asked for and absent.
    """
    if accelerator not in ("auto", "cpu", "cuda", "gpu"):
        raise ValueError(f"device must be auto, cpu or cuda, got {accelerator!r}")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {accelerator} asked for, but no CUDA device is available; use auto or cpu"
        )
    use_cuda = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype = _AUTOCAST.get(precision)
    if dtype is torch.float16 and not use_cuda:
        dtype = None
    return device, dtype


def preset_precision(device: torch.device) -> str:
    """``trainer.precision`` of the hardware preset this device gets (``conf/hardware/``)."""
    from omegaconf import OmegaConf

    from brain_go_brr.hardware import detect_preset
    from brain_go_brr.paths import conf_dir

    name = detect_preset() if device.type == "cuda" else "cpu"
    preset = OmegaConf.load(conf_dir() / "hardware" / f"{name}.yaml")
    return str(OmegaConf.select(preset, "trainer.precision", default="32-true"))


# ----------------------------------------------------------------------------- prediction


@torch.inference_mode()
def predict_record(
    detector: nn.Module,
    signals: np.ndarray,
    window_samples: int,
    stride_samples: int,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    on_batch: Callable[[int], object] | None = None,
) -> np.ndarray:
    """The stitched seizure probability of one whole recording.

    Args:
        detector: maps (B, 19, window_samples) float to (B, window_samples) logits.
        signals: (19, n_samples) preprocessed recording at 256 Hz (float16 memmap is fine).
        window_samples: window length (samples).
        stride_samples: window stride (samples).
        on_batch: called with the number of windows after each forward pass (progress).

    Returns:
        (n_samples,) float32 probabilities: each sample the mean over the windows covering
        it; a record shorter than a window is zero-padded to one window.
    """
    from brain_go_brr.data.sampling import window_starts

    n_samples = int(signals.shape[1])
    starts = window_starts(n_samples, window_samples, stride_samples)  # (W,)
    window_probs = np.empty((starts.size, window_samples), dtype=np.float32)  # (W, L)
    for lo in range(0, starts.size, batch_size):
        batch_starts = starts[lo : lo + batch_size]
        x = np.zeros((batch_starts.size, N_CHANNELS, window_samples), dtype=np.float16)
        for k, start in enumerate(batch_starts.tolist()):
            piece = signals[:, start : start + window_samples]
            x[k, :, : piece.shape[1]] = piece
        x_t = torch.from_numpy(x).to(device).float()  # (B, 19, L)
        ctx = (
            torch.autocast(device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            logits = detector(x_t)  # (B, L)
        window_probs[lo : lo + batch_starts.size] = torch.sigmoid(logits.float()).cpu().numpy()
        if on_batch is not None:
            on_batch(batch_starts.size)
    return stitch_windows(window_probs, starts, n_samples)


# ----------------------------------------------------------------------------- operating point


def operating_point_path(ckpt_path: str | Path) -> Path:
    """Where a checkpoint's operating point lives: ``best.ckpt`` -> ``best.operating_point.json``."""
    path = Path(ckpt_path)
    return path.with_name(path.stem + OPERATING_POINT_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_operating_point(ckpt_path: str | Path, point: Mapping[str, Any]) -> Path:
    """Write ``point`` beside the checkpoint (atomically), bound to it by its SHA-256."""
    path = Path(ckpt_path)
    out = operating_point_path(path)
    atomic_write_json(
        out, {**point, "checkpoint": path.name, "checkpoint_sha256": file_sha256(path)}
    )
    return out


def load_operating_point(ckpt_path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the saved operating point, or None; a note when there is none or it does not fit)."""
    path = Path(ckpt_path)
    side = operating_point_path(path)
    if not side.is_file():
        return None, (
            f"{path.name} has no saved operating point ({side.name}); using the training "
            "run's post-processing (run evaluate.py on the dev split to choose one)"
        )
    try:
        point = json.loads(side.read_text())
        post = point["post"]
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"{side}: unreadable operating point ({exc}); using the training run's"
    if point.get("checkpoint_sha256") != file_sha256(path):
        return None, (
            f"{side} was chosen for another version of {path.name} (SHA-256 differs); "
            "using the training run's post-processing"
        )
    if not isinstance(post, dict):
        return None, f"{side}: 'post' is not a mapping; using the training run's"
    return point, None


def resolve_post(
    loaded: LoadedCheckpoint,
    tau_on: float | None = None,
    tau_off: float | None = None,
) -> tuple[PostConfig, str, list[str]]:
    """The post-processing ``detect`` and ``szcore`` use, where it came from, and warnings.

    The checkpoint's saved operating point, else the training run's post-processing (with a
    warning); ``tau_on`` / ``tau_off`` override the thresholds of either.
    """
    point, note = load_operating_point(loaded.path)
    warnings = [note] if note else []
    if point is not None:
        known = {f.name for f in dataclasses.fields(PostConfig)}
        post = PostConfig(**{k: v for k, v in point["post"].items() if k in known})
        source = (
            f"operating point of {point.get('split', 'dev')} at <= {point.get('fa_target')} "
            f"FA/24h ({operating_point_path(loaded.path).name})"
        )
    else:
        post, source = loaded.post, "the training run's post-processing"
    if tau_on is not None or tau_off is not None:
        post = post.with_thresholds(
            post.tau_on if tau_on is None else tau_on,
            post.tau_off if tau_off is None else tau_off,
        )
        source += " with thresholds from the command line"
    return post, source, warnings
