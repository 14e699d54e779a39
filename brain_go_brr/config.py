"""The two small helpers every layer shares: environment switches and plain configs.

* :func:`env_flag` reads an on/off environment switch (``BGB_ACCEL``,
  ``BGB_MALLOC_TUNING``): ``0``, ``false``, ``no`` and ``off`` (any
  case) turn it off, anything else turns it on, unset gives the default.
* :func:`plain` and :func:`plain_dict` turn a Hydra config (or part of one) into resolved
  plain Python values, so code below the entry points never depends on OmegaConf types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

_OFF = frozenset({"0", "false", "no", "off"})


def env_flag(name: str, default: bool = True) -> bool:
    """Whether the switch ``name`` is on (see the module docstring)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in _OFF


def plain(cfg: Any) -> Any:
    """``cfg`` with every OmegaConf container resolved into dicts and lists; other values as
    they are (OmegaConf is imported only when given one of its containers)."""
    if type(cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def plain_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping (DictConfig or mapping) as a plain dict with string keys."""
    container = plain(cfg)
    if not isinstance(container, Mapping):
        raise TypeError(f"expected a mapping config, got {type(cfg).__name__}")
    return {str(k): v for k, v in container.items()}
