"""`pix2pix VERB [flags]`: the command line.

Each verb's package (or module, for the registry's three) has `add_arguments(parser)` and
`run(args) -> int`. It is imported only when its verb runs, so `pix2pix --help` stays
instant.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import types
from importlib import metadata

from pipelines.common.errors import UserError

# verb -> (module, one-line description)
VERBS: dict[str, tuple[str, str]] = {
    "prepare": ("pipelines.prepare", "pair, validate and resize an image dataset into Parquet"),
    "train": ("pipelines.train", "train pix2pix with Ray Train (DDP), tracked in MLflow"),
    "tune": ("pipelines.tune", "sweep lambda_L1, the PatchGAN size and the norm with Ray Tune"),
    "evaluate": (
        "pipelines.registry.evaluation",
        "L1 / PSNR / SSIM of a model on a prepared split",
    ),
    "register": (
        "pipelines.registry.registration",
        "log a generator as an MLflow model, register it",
    ),
    "promote": (
        "pipelines.registry.promotion",
        "move the champion alias only if the candidate wins",
    ),
    "translate": ("pipelines.translate", "translate an image archive in bulk with Ray Data"),
    "retrain": ("pipelines.retrain", "prepare -> train|tune -> evaluate -> register -> promote"),
    "demo": ("pipelines.demo", "the whole workflow on built-in sample photos, with a report"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {verb:<10} {desc}" for verb, (_, desc) in VERBS.items())
    parser = argparse.ArgumentParser(
        prog="pix2pix",
        description="Pix2Pix image-to-image translation on Ray and MLflow.",
        epilog=f"verbs:\n{lines}\n\n`pix2pix VERB --help` lists a verb's flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="pix2pix VERB [flags]",
    )
    parser.add_argument("--version", action="store_true", help="show the version and exit")
    return parser


def version() -> str:
    try:
        return metadata.version("pix2pix")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _unknown_verb(verb: str) -> str:
    close = difflib.get_close_matches(verb, VERBS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown verb {verb!r}; {hint}choose one of: {', '.join(VERBS)}"


def verb_parser(verb: str) -> tuple[types.ModuleType, argparse.ArgumentParser]:
    """The verb's module and its argument parser (what `pix2pix VERB --help` shows)."""
    module_name, description = VERBS[verb]
    module = importlib.import_module(module_name)
    # No abbreviations: a prefix of one flag must not pass for another (`--data` for
    # `--dataset_mode` in retrain, which takes no --data).
    parser = argparse.ArgumentParser(
        prog=f"pix2pix {verb}", description=description, allow_abbrev=False
    )
    module.add_arguments(parser)
    return module, parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"pix2pix {version()}")
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        top.error(_unknown_verb(verb))
    if not sys.stdout.isatty():
        # In a log file a progress bar is one long line of carriage returns.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    module, parser = verb_parser(verb)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except UserError as err:
        print(f"pix2pix {verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pix2pix {verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        # Storage (fsspec, pyarrow) only on a failure, so that `pix2pix --help` stays instant.
        from pipelines.common.storage import access_problem

        problem = access_problem(err)
        if problem is None:
            raise
        print(f"pix2pix {verb}: error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
