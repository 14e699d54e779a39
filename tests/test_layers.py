"""The package's layers only point down (the README's layout block), and scoring is torch-free.

Every ``brain_go_brr`` import of every module, at the top or inside a function, is read from
the source (no module is imported here).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "brain_go_brr"

#: Layer of each top-level module or subpackage, lowest first; a module may import from its
#: own layer's modules of the same package, and from any lower layer.
LAYERS: dict[str, int] = {
    **dict.fromkeys(("io", "paths", "config", "runtime", "hardware", "annotations"), 0),
    "data": 1,
    "models": 2,
    "accel": 3,
    "post": 4,
    "scoring": 5,
    "inference": 6,
    "evaluation": 7,
    "training": 7,
    **dict.fromkeys(("detect", "szcore", "demo", "cli"), 8),
}
#: Same-layer imports allowed across units (the rest of a layer never imports its peers).
LATERAL: set[tuple[str, str]] = {
    ("annotations", "io"),
    ("runtime", "config"),
    ("szcore", "detect"),
}


def _unit(module: str) -> str:
    """``brain_go_brr.scoring.nedc`` -> ``scoring``; ``brain_go_brr`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "brain_go_brr":
            # from brain_go_brr import accel: the names are the modules imported
            out.extend((f"brain_go_brr.{alias.name}", node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
    return out


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_unit_has_a_layer() -> None:
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()}
    assert units - {"__init__"} == set(LAYERS)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    unit = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if unit == "__init__":
        return
    for module, line in _imports(path):
        if not module.startswith("brain_go_brr"):
            continue
        target = _unit(module)
        if target in ("", unit):
            continue
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        assert LAYERS[target] <= LAYERS[unit], f"{where}: a layer above {unit!r}"
        if LAYERS[target] == LAYERS[unit]:
            assert (unit, target) in LATERAL, f"{where}: a peer of {unit!r} in its layer"


@pytest.mark.parametrize("path", sorted((PACKAGE / "scoring").glob("*.py")), ids=lambda p: p.name)
def test_scoring_needs_no_torch(path: Path) -> None:
    heavy = {"torch", "lightning", "hydra", "omegaconf"}
    for module, line in _imports(path):
        assert module.split(".")[0] not in heavy, f"{path.name}:{line} imports {module}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "models").glob("*.py")), ids=lambda p: p.name)
def test_models_are_plain_pytorch(path: Path) -> None:
    """The model holds no kernel code: no compiler imports, no private torch ops (the CPU
    kernels live in brain_go_brr/accel, applied from outside)."""
    compilers = {"numba", "llvmlite", "ctypes", "cffi"}
    for module, line in _imports(path):
        assert module.split(".")[0] not in compilers, f"{path.name}:{line} imports {module}"
    source = path.read_text()
    assert "torch.ops." not in source, f"{path.name} calls a torch.ops operator"
    assert "mkldnn" not in source, f"{path.name} reaches oneDNN directly"
