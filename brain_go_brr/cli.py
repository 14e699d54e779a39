"""The ``brain-go-brr`` console script: the non-Hydra tools, one sub-command each.

Each sub-command lives in its own module, imported only when that command runs (so
``brain-go-brr --help`` stays fast and a missing optional dependency only affects the
command that needs it). A command module provides::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the process exit code
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from brain_go_brr.runtime import tune_cpu_allocator

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("brain_go_brr.data.synth", "write a synthetic corpus (TUSZ v2.0.3 or BIDS layout)"),
    "prepare": (
        "brain_go_brr.data.prepare",
        "preprocess a TUSZ or BIDS tree into the window cache",
    ),
    "score": ("brain_go_brr.scoring.cli", "score hypothesis csv_bi files against references"),
    "model-info": ("brain_go_brr.models.info", "live parameters and FLOPs per stage of a model"),
    "detect": (
        "brain_go_brr.detect",
        "run a checkpoint over EDF files or trees; csv_bi and/or SzCORE TSV hypotheses",
    ),
    "szcore": ("brain_go_brr.szcore", "SzCORE entry point: one EDF in, one events TSV out"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="brain-go-brr",
        description="EEG seizure detection tools. Training and evaluation: train.py, evaluate.py.",
        epilog=f"commands:\n{lines}\n\nrun 'brain-go-brr COMMAND --help' for a command's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


#: Commands that run the detector, for which brain_go_brr.runtime tunes the C allocator.
MODEL_COMMANDS = {"detect", "szcore"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        _top_parser().print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        _top_parser().print_usage(sys.stderr)
        print(
            f"brain-go-brr: unknown command {name!r}; choose one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module_name, help_ = COMMANDS[name]
    if name in MODEL_COMMANDS:
        tune_cpu_allocator()  # before the model allocates tensors (brain_go_brr/runtime.py)
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"brain-go-brr {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
