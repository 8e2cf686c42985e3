"""``python -m objectives.score VIDEO_OR_DIR... [--dimensions ...] [--backend proxy] [--weights-dir D]
[--out table.csv]``: score clips, print a table, write it as CSV and (beside it, ``.json``) as JSON.

The CSV has one row per video (path, fps, frames, every record) and a last row ``ALL`` with the aggregated
scores; the JSON holds the same plus the aggregation parts, the backend and each dimension's tier.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ._io import find_videos, read_video
from ._registry import BACKENDS, DIMENSIONS
from ._scorer import Scorer

AGGREGATE_ROW = "ALL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m objectives.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", help="mp4/gif files or directories (searched recursively)")
    parser.add_argument("--dimensions", nargs="+", default=list(DIMENSIONS), metavar="DIM",
                        help=f"dimensions to score (default: all): {', '.join(DIMENSIONS)}")
    parser.add_argument("--backend", default="proxy", choices=BACKENDS,
                        help="proxy: weight-free (exact where possible); vbench: VBench's networks from VBench's cache")
    parser.add_argument("--weights-dir", default=None,
                        help="VBench's cache directory (default: $VBENCH_CACHE_DIR, else ~/.cache/vbench)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="scores.csv", type=Path, help="CSV path; the JSON goes beside it")
    return parser


def _format(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 with a one-line message on bad input)."""
    args = _parser().parse_args(argv)
    try:
        scorer = Scorer(args.dimensions, backend=args.backend, weights_dir=args.weights_dir, device=args.device)
        paths = find_videos(args.videos)
        rows, per_video = [], []
        for path in paths:
            frames, fps = read_video(path)
            try:
                records = scorer.score_video(frames, fps)
            except ValueError as err:
                raise ValueError(f"{str(path)!r}: {err}") from None
            per_video.append(records)
            rows.append({"video": str(path), "fps": fps, "frames": len(frames)} | records)
    except (ValueError, TypeError, OSError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    scores = scorer.aggregate(per_video)

    columns = ["video", "fps", "frames", *scorer.record_names]
    table = [{k: row[k] for k in columns} for row in rows] + [{"video": AGGREGATE_ROW, "fps": "", "frames": ""} | scores]
    widths = {c: max(len(c), *(len(_format(r[c])) for r in table)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in table:
        print("  ".join(_format(row[c]).ljust(widths[c]) for c in columns))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    report = {"backend": args.backend, "tiers": scorer.tiers, "videos": rows, "scores": scores}
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
