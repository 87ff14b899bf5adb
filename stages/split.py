"""split stage: data/raw/<source>/tracks.csv -> data/split.csv (+ metrics/split.json).

Usage (dvc.yaml names the paths): ``python stages/split.py --tracks data/raw/<source>/tracks.csv
--out data/split.csv --metrics metrics/split.json --validation-reports reports/validation``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run, stage_args, write_metrics  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    from mgr.data.split import SplitWarning, make_split, summary
    from mgr.data.validation import validate_split
    from mgr.io import atomic_path
    from mgr.params import load_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stage_args(ap, out="data/split.csv", metrics="metrics/split.json", split=False)
    args = ap.parse_args(argv)
    p = load_params(args.params)
    tracks_csv = Path(args.tracks or f"data/raw/{p.data.source}/tracks.csv")
    if not tracks_csv.exists():
        from mgr.errors import DataError

        raise DataError(f"{tracks_csv} not found: run the fetch stage first (dvc repro fetch)")
    tracks = pd.read_csv(tracks_csv, dtype={c: str for c in ("track_id", "artist", "source_split", "fingerprint",
                                                             "near_fingerprint", "dup_group")})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SplitWarning)
        split = make_split(tracks, p.split)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    validate_split(split, tracks, grouped=p.split.strategy in ("group", "kfold"),
                   duplicates=p.split.strategy != "predefined", report_dir=Path(args.validation_reports))
    with atomic_path(args.out) as tmp:
        split.to_csv(tmp, index=False)
    stats = summary(split, tracks)
    stats["strategy"] = p.split.strategy
    write_metrics(args.metrics, stats)  # counts only (run facts: reports/runs/split.json)
    print(f"split: {stats['parts']} ({stats['n_excluded']} excluded)", file=sys.stderr)


if __name__ == "__main__":
    run(main)
