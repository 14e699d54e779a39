"""``hardware=auto``: pick the preset of ``conf/hardware/`` that matches this machine.

Hydra cannot choose a config group from the machine it runs on, so the entry points
(``train.py``) replace ``hardware=auto`` (the default) with the detected preset before
Hydra composes. A GPU without a preset keeps ``auto`` (Lightning picks the accelerator,
conservative batch and precision), and so does a sweep whose jobs run on other machines
(``hydra/launcher=submitit_slurm``): the machine that submits them (a login node, often
without a GPU) says nothing about the nodes that run them.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Substring of ``torch.cuda.get_device_name()`` -> preset name in ``conf/hardware/``.
GPU_PRESETS: tuple[tuple[str, str], ...] = (
    ("4090", "rtx4090"),
    ("A100", "a100"),
    ("H100", "h100"),
    ("H200", "h100"),
)

#: ``hydra/launcher`` options whose jobs run on other machines than the one submitting them.
REMOTE_LAUNCHERS: frozenset[str] = frozenset({"submitit_slurm"})


def detect_preset() -> str:
    """``cpu`` without CUDA, the matching GPU preset, or ``auto`` for an unknown GPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0)
    for needle, preset in GPU_PRESETS:
        if needle in name:
            return preset
    return "auto"


def resolve_auto(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides with ``hardware=auto`` (explicit or implied) made concrete.

    An explicit preset (``hardware=a100``) is kept as it is; with a remote launcher the
    overrides are returned unchanged (``auto`` stays ``auto``).
    """
    out = list(overrides)
    pairs = [_key_value(o) for o in out]
    if any(key == "hydra/launcher" and value in REMOTE_LAUNCHERS for key, value in pairs):
        return out
    explicit = [i for i, (key, _) in enumerate(pairs) if key == "hardware"]
    if explicit and pairs[explicit[-1]][1] != "auto":
        return out
    for i in reversed(explicit):
        del out[i]
    return [*out, f"hardware={detect_preset()}"]


def _key_value(override: str) -> tuple[str, str]:
    """``"+hardware=a100"`` -> ``("hardware", "a100")``; a flag such as ``-m`` has no value."""
    key, _, value = override.partition("=")
    return key.lstrip("+~").strip(), value.strip()
