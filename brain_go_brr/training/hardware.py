"""``hardware=auto``: pick the preset of ``conf/hardware/`` that matches this machine.

Hydra cannot choose a config group from the machine it runs on, so the entry points
(``train.py``) replace ``hardware=auto`` (the default) with the detected preset before
Hydra composes. A GPU without a preset keeps ``auto`` (Lightning picks the accelerator,
conservative batch and precision).
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

    An explicit preset (``hardware=a100``) is kept as it is.
    """
    out = list(overrides)
    explicit = [i for i, o in enumerate(out) if o.split("=", 1)[0].lstrip("+~") == "hardware"]
    if explicit and out[explicit[-1]].split("=", 1)[-1] != "auto":
        return out
    for i in reversed(explicit):
        del out[i]
    return [*out, f"hardware={detect_preset()}"]
