"""``python -m vboost.report STUDY_OR_DIR [--storage URL] [--study NAME] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys

import optuna

from vboost.secrets import mask_url
from vboost.report import make_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vboost.report",
        description="Report of a vboost sweep: Pareto plot, interactive HTML, side-by-side videos, summary.",
    )
    parser.add_argument("study_or_dir", help="sweep output directory (outputs/<study>), a SQLite file, or a study name with --storage")
    parser.add_argument("--storage", help="Optuna storage URL (default: the SQLite file in the directory)")
    parser.add_argument("--study", dest="study_name", help="study name when the storage holds several")
    parser.add_argument("--out", help="output directory (default: <study dir>/report)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the report's in-memory plot study is no news
    try:
        report = make_report(args.study_or_dir, storage=args.storage, study_name=args.study_name, out=args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {mask_url(str(err))}", file=sys.stderr)
        return 2
    print(f"report: {report.summary.parent}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
