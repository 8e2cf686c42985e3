"""``python -m vboost.export STUDY_OR_DIR [--storage URL] [--study NAME] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys

from vboost.export import export_study
from vboost.secrets import mask_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vboost.export",
        description="Export a vboost sweep's recommended setting (or say there is none) and its alternatives: "
        "preset, diffusers scripts, ComfyUI values.",
    )
    parser.add_argument("study_or_dir", help="sweep output directory (outputs/<study>), a SQLite file, or a study name with --storage")
    parser.add_argument("--storage", help="Optuna storage URL (default: the SQLite file in the directory)")
    parser.add_argument("--study", dest="study_name", help="study name when the storage holds several")
    parser.add_argument("--out", help="output directory (default: <study dir>/export)")
    args = parser.parse_args(argv)
    try:
        export = export_study(args.study_or_dir, storage=args.storage, study_name=args.study_name, out=args.out)
    except (FileNotFoundError, ValueError, KeyError) as err:
        # Errors may quote the storage URL; never echo its password.
        print(f"error: {mask_url(str(err))}", file=sys.stderr)
        return 2
    print(f"export: {export.directory} ({export.summary})")
    print(mask_url(export.decision.headline()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
