"""The dataset table contract: ``tracks.csv`` and ``rejected.csv`` (written by fetch, read by
every later stage), their columns and their readers. pandas is imported inside the readers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mgr.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

TRACKS_FILE = "tracks.csv"
REJECTED_FILE = "rejected.csv"
BASE_COLUMNS = ["track_id", "path", "genre", "duration_s", "sample_rate", "channels"]
OPTIONAL_COLUMNS = ["artist", "tempo_bpm", "tags", "source_split"]
FINGERPRINT_COLUMNS = ["fingerprint", "near_fingerprint", "dup_group"]
STR_COLUMNS = ["track_id", "path", "genre", "artist", "tags", "source_split", *FINGERPRINT_COLUMNS]
REJECTED_COLUMNS = ["path", "reason", "track_id"]


def load_tracks(dataset_dir: str | Path) -> pd.DataFrame:
    """Read ``dataset_dir/tracks.csv``: ids, tags etc. as str, ``path`` made absolute."""
    import pandas as pd

    d = Path(dataset_dir)
    f = d / TRACKS_FILE
    if not f.is_file():
        raise DataError(f"{f} not found (run the fetch stage first: dvc repro fetch)")
    try:
        header = pd.read_csv(f, nrows=0).columns
        dtypes = {c: str for c in STR_COLUMNS if c in header}
        df = pd.read_csv(f, dtype=dtypes, keep_default_na=False, na_values={
            c: ["", "nan", "NaN"] for c in header if c not in STR_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{f} is not a readable CSV table: {type(e).__name__}") from None
    missing = [c for c in BASE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{f} lacks the column(s) {missing}")
    base = d.resolve()
    df["path"] = [p if Path(p).is_absolute() else str(base / p) for p in df["path"]]
    for c in ("tags", "artist", "source_split", *FINGERPRINT_COLUMNS):
        if c in df:
            df[c] = df[c].fillna("").astype(str)
    if "tempo_bpm" in df:
        df["tempo_bpm"] = pd.to_numeric(df["tempo_bpm"], errors="coerce")
    return df


def load_rejected(dataset_dir: str | Path) -> pd.DataFrame:
    """Read ``dataset_dir/rejected.csv`` (empty frame if there is none)."""
    import pandas as pd

    f = Path(dataset_dir) / REJECTED_FILE
    if not f.is_file():
        return pd.DataFrame(columns=REJECTED_COLUMNS)
    return pd.read_csv(f, dtype=str, keep_default_na=False)


__all__ = ["BASE_COLUMNS", "FINGERPRINT_COLUMNS", "REJECTED_COLUMNS", "REJECTED_FILE", "STR_COLUMNS",
           "TRACKS_FILE", "load_rejected", "load_tracks"]
