"""great-expectations suites for tracks.csv and split.csv: failures name the expectation and examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mgr.data.validation import validate_split, validate_tracks
from mgr.errors import DataError


def tracks_df(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(n)],
            "path": [f"a/t{i}.wav" for i in range(n)],
            "genre": ["blues", "jazz"] * (n // 2),
            "duration_s": [30.0] * n,
            "sample_rate": [22050] * n,
            "channels": [1] * n,
            "tempo_bpm": [120.0] * (n - 1) + [np.nan],
            "artist": [f"a{i % 3}" for i in range(n)],
        }
    )


def test_good_tracks_pass_and_report_is_written(tmp_path: Path) -> None:
    report = validate_tracks(tracks_df(), genres=["blues", "jazz"], report_dir=tmp_path)
    assert report["success"] is True
    saved = json.loads((tmp_path / "tracks.json").read_text())
    assert saved["success"] is True


def test_bad_tracks_fail_with_named_expectations_and_examples(tmp_path: Path) -> None:
    df = tracks_df()
    df.loc[1, "track_id"] = "t0"  # duplicate
    df.loc[2, "genre"] = "polka"  # outside the vocabulary
    df.loc[3, "tempo_bpm"] = 500.0  # implausible
    with pytest.raises(DataError) as ei:
        validate_tracks(df, genres=["blues", "jazz"], report_dir=tmp_path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "expect_column_values_to_be_unique(track_id)" in msg and "'t0'" in msg
    assert "expect_column_values_to_be_in_set(genre)" in msg and "'polka'" in msg
    assert "expect_column_values_to_be_between(tempo_bpm)" in msg and "500.0" in msg
    assert (tmp_path / "tracks.json").exists()  # the full report is kept


def test_split_suite(tmp_path: Path) -> None:
    tracks = tracks_df()
    good = pd.DataFrame({"track_id": tracks.track_id, "split": ["train", "train", "train", "val", "test", "test"]})
    # artists a0 (t0,t3) a1 (t1,t4) a2 (t2,t5) straddle parts: fine ungrouped, a leak when grouped
    assert validate_split(good, tracks, report_dir=tmp_path)["success"]
    with pytest.raises(DataError, match="split_artists") as ei:
        validate_split(good, tracks, grouped=True, report_dir=tmp_path)
    assert "'a0'" in str(ei.value)
    grouped_ok = pd.DataFrame({"track_id": tracks.track_id, "split": ["train", "val", "test"] * 2})
    assert validate_split(grouped_ok, tracks, grouped=True, report_dir=tmp_path)["success"]
    bad = good.copy()
    bad.loc[0, "split"] = "holdout"
    bad.loc[1, "track_id"] = "ghost"
    with pytest.raises(DataError) as ei:
        validate_split(bad, tracks, report_dir=tmp_path)
    assert "'holdout'" in str(ei.value) and "'ghost'" in str(ei.value)
