"""Data validation between stages with great-expectations (ephemeral context, no network).

:func:`run_suite` is the shared plumbing: it validates a DataFrame against a list of
expectations, writes the full JSON report to ``reports/validation/<name>.json`` and, on
failure, raises :class:`mgr.errors.DataError` with a short report naming each failed
expectation and a few example values.

Suites here: :func:`validate_tracks` (``tracks.csv``) and :func:`validate_split`
(``split.csv``); ``mgr.validation.features`` holds the feature-table and HDF5 suites.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgr.errors import DataError
from mgr.utils import atomic_path

REPORT_DIR = Path("reports/validation")
MAX_EXAMPLES = 5


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def run_suite(name: str, df: Any, expectations: list, report_dir: Path | None = REPORT_DIR) -> dict:
    """Validate ``df`` against ``expectations`` (great_expectations Expectation objects).

    Returns the JSON report. Raises DataError listing every failed expectation on failure.
    """
    gx = _gx()
    # GE prints tqdm progress bars on stderr; they are noise in a pipeline log.
    with contextlib.redirect_stderr(io.StringIO()):
        ctx = gx.get_context(mode="ephemeral")
        batch_def = (
            ctx.data_sources.add_pandas(f"{name}-source")
            .add_dataframe_asset(name)
            .add_batch_definition_whole_dataframe("all")
        )
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        suite = gx.ExpectationSuite(name=name)
        for e in expectations:
            suite.add_expectation(e)
        result = batch.validate(suite)
    report = result.to_json_dict()
    if report_dir is not None:
        path = Path(report_dir) / f"{name}.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if not result.success:
        lines = []
        for r in result.results:
            if r.success:
                continue
            cfg = r.expectation_config
            kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
            column = kwargs.pop("column", None)
            res = r.result or {}
            examples = res.get("partial_unexpected_list") or []
            what = f"{cfg.type}" + (f"({column})" if column else "")
            detail = []
            if kwargs:
                detail.append(", ".join(f"{k}={_short(v)}" for k, v in kwargs.items()))
            if res.get("unexpected_count") is not None:
                detail.append(f"{res['unexpected_count']} unexpected")
            if examples:
                detail.append("e.g. " + ", ".join(_short(x) for x in examples[:MAX_EXAMPLES]))
            if res.get("observed_value") is not None:
                detail.append(f"observed {_short(res['observed_value'])}")
            lines.append(f"{what}: " + "; ".join(detail))
        where = f" (full report: {Path(report_dir) / (name + '.json')})" if report_dir is not None else ""
        raise DataError(f"validation of {name} failed{where}: " + " | ".join(lines))
    return report


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _one_row_per_track(E: Any) -> list:
    """At least one row, and every row a distinct, non-null ``track_id``."""
    return [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column="track_id"),
        E.ExpectColumnValuesToBeUnique(column="track_id"),
    ]


def validate_tracks(
    tracks: Any,
    *,
    genres: Sequence[str] | None = None,
    min_duration_s: float = 0.0,
    max_duration_s: float = 24 * 3600.0,
    report_dir: Path | None = REPORT_DIR,
) -> dict:
    """The ``tracks.csv`` suite: unique ids, known genres, plausible audio, tempo in 30-300 BPM."""
    gx = _gx()
    E = gx.expectations
    exps: list = [
        *_one_row_per_track(E),
        E.ExpectColumnValuesToNotBeNull(column="path"),
        E.ExpectColumnValuesToNotBeNull(column="genre"),
        E.ExpectColumnValuesToBeBetween(column="duration_s", min_value=min_duration_s, max_value=max_duration_s),
        E.ExpectColumnValuesToBeBetween(column="sample_rate", min_value=1000, max_value=384000),
        E.ExpectColumnValuesToBeBetween(column="channels", min_value=1, max_value=64),
    ]
    if genres is not None:
        exps.append(E.ExpectColumnValuesToBeInSet(column="genre", value_set=list(genres)))
    if "tempo_bpm" in tracks.columns and tracks["tempo_bpm"].notna().any():
        # null tempos are allowed (unknown); present ones must be plausible
        exps.append(E.ExpectColumnValuesToBeBetween(column="tempo_bpm", min_value=30, max_value=300))
    missing = [c for c in ("track_id", "path", "genre", "duration_s", "sample_rate", "channels") if c not in tracks.columns]
    if missing:
        raise DataError(f"validation of tracks failed: missing columns {missing}")
    return run_suite("tracks", tracks, exps, report_dir)


def validate_split(
    split: Any,
    tracks: Any,
    *,
    grouped: bool = False,
    report_dir: Path | None = REPORT_DIR,
) -> dict:
    """The ``split.csv`` suite: every listed track exists and is in exactly one split.

    With ``grouped`` (the ``group`` strategy), no artist may appear in two splits; in k-fold
    mode, no artist may appear in two folds. Tracks absent from ``split.csv`` are allowed only
    when the caller excluded them on purpose (a predefined split that leaves tracks out).
    """
    import pandas as pd

    gx = _gx()
    E = gx.expectations
    exps: list = [
        *_one_row_per_track(E),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
        E.ExpectColumnValuesToBeInSet(column="track_id", value_set=list(tracks["track_id"].astype(str))),
    ]
    df = split.copy()
    df["track_id"] = df["track_id"].astype(str)
    if "fold" in df.columns:
        exps.append(E.ExpectColumnValuesToNotBeNull(column="fold"))
    if grouped and "artist" in tracks.columns:
        art = tracks[["track_id", "artist"]].copy()
        art["track_id"] = art["track_id"].astype(str)
        merged = df.merge(art, on="track_id", how="left")
        merged = merged[merged["artist"].notna() & (merged["artist"].astype(str) != "")]
        unit = "fold" if "fold" in merged.columns else "split"
        n_units = merged.groupby("artist")[unit].nunique()
        single = [str(a) for a in n_units.index[n_units.to_numpy() == 1]]
        artists = pd.DataFrame({"artist": merged["artist"].astype(str).drop_duplicates().to_numpy()})
        if len(artists):
            # an artist outside the set of single-part artists straddles two parts (a leak)
            run_suite(
                f"split_artists_one_{unit}",
                artists,
                [E.ExpectColumnValuesToBeInSet(column="artist", value_set=single)],
                report_dir,
            )
    return run_suite("split", df, exps, report_dir)
