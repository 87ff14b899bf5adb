"""split stage: data/raw/<source>/tracks.csv -> data/split.csv (+ metrics/split.json)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run, write_metrics  # noqa: E402


def main() -> None:
    import pandas as pd

    from mgr.params import load_params
    from mgr.data.split import SplitWarning, make_split, summary
    from mgr.io import atomic_path
    from mgr.data.validation import validate_split

    p = load_params()
    tracks_csv = Path("data/raw") / p.data.source / "tracks.csv"
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
                   duplicates=p.split.strategy != "predefined")
    with atomic_path("data/split.csv") as tmp:
        split.to_csv(tmp, index=False)
    stats = summary(split, tracks)
    stats["strategy"] = p.split.strategy
    write_metrics("split", stats)  # counts only (run facts: reports/runs/split.json)
    print(f"split: {stats['parts']} ({stats['n_excluded']} excluded)", file=sys.stderr)


if __name__ == "__main__":
    run(main)
