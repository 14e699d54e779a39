"""Where the project's own folders are (Hydra configs, default caches)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def conf_dir() -> Path:
    """The Hydra config folder ``conf/`` of this checkout."""
    path = PROJECT_ROOT / "conf"
    if not path.is_dir():
        raise FileNotFoundError(
            f"Hydra config folder not found at {path}; brain-go-brr must be installed from a "
            "checkout with 'pip install -e .' (the configs live in the repository, not the wheel)"
        )
    return path


def default_cache_root() -> Path:
    """Root for generated corpora and caches: ``$BGB_CACHE_DIR`` or ``<repo>/.cache``."""
    env = os.environ.get("BGB_CACHE_DIR")
    return Path(env).expanduser() if env else PROJECT_ROOT / ".cache"
