"""great-expectations suites for the feature table and the HDF5 spectrogram store.

:func:`validate_feature_table` checks ``data/features.parquet``: one row per track, ids and
splits present, every feature column finite (no NaN/inf) and within a plausible range for its
kind (chroma in [0, 1], spectral frequencies within Nyquist, tempo in BPM, ...).
:func:`validate_store` checks ``data/spectrograms.h5``: every attribute present, the per-track
arrays complete and of one length, genre indices within the label vocabulary, splits known,
frame ranges inside the spectrogram dataset and non-overlapping, statistics of the right shape.
Both raise :class:`mgr.errors.DataError` with a short report (via :func:`mgr.data.validation.run_suite`,
which also writes the full JSON report under ``reports/validation/``). The store suite runs
through :func:`mgr.data.validation.run_checks`: exact NumPy checks, great_expectations (import ~2 s)
only when one fails or with ``MGR_VALIDATION_ENGINE=ge``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mgr.data.validation import _gx, run_checks, run_suite
from mgr.errors import DataError

BIG = 1e12  # a finite bound: "between -BIG and BIG" rejects inf, and null rejects NaN


def _range_for(col: str, sr: float) -> tuple[float, float]:
    """Plausible (min, max) for a feature column by its name (``sr``: the sample rate)."""
    nyq = sr / 2.0
    c = col.lower()
    stat = next((s for s in ("mean", "var", "std", "skew", "kurtosis", "median", "min", "max") if f"_{s}" in c), "")
    if c == "tempo":
        return 0.0, 1000.0
    if c.startswith(("chroma", "chroma_cqt", "chroma_cens")):
        return (0.0, 1.0) if stat in ("mean", "median", "min", "max", "std", "var") else (-BIG, BIG)
    if c.startswith(("zero_crossing_rate", "zcr")):
        return (0.0, 1.0) if stat in ("mean", "median", "min", "max", "std", "var") else (-BIG, BIG)
    if c.startswith(("spectral_centroid", "spectral_rolloff", "rolloff", "spectral_bandwidth")):
        if stat in ("mean", "median", "min", "max", "std"):
            return 0.0, nyq
        if stat == "var":
            return 0.0, nyq * nyq
        return -BIG, BIG
    if c.startswith(("rms", "rmse")):
        return (0.0, 2.0) if stat in ("mean", "median", "min", "max", "std", "var") else (-BIG, BIG)
    if c.startswith("tonnetz"):
        return (-1.0, 1.0) if stat in ("mean", "median", "min", "max") else (-BIG, BIG)
    if c.startswith(("harmony", "perceptr")):
        return (-2.0, 2.0) if stat in ("mean", "var") else (-BIG, BIG)
    if stat in ("var", "std"):
        return 0.0, BIG
    return -BIG, BIG


def validate_feature_table(
    df: Any,
    feature_columns: list[str],
    *,
    sample_rate: float,
    expected_tracks: list[str] | None = None,
    report_dir: Path | None,
) -> dict:
    """The feature-table suite (see the module docstring)."""
    gx = _gx()
    E = gx.expectations
    missing = [c for c in ["track_id", "split", "genre", *feature_columns] if c not in df.columns]
    if missing:
        raise DataError(f"validation of features failed: missing columns {missing[:5]}")
    exps: list = [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column="track_id"),
        E.ExpectColumnValuesToBeUnique(column="track_id"),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
        E.ExpectColumnValuesToNotBeNull(column="genre"),
    ]
    if expected_tracks is not None:
        exps.append(E.ExpectColumnValuesToBeInSet(column="track_id", value_set=list(map(str, expected_tracks))))
    # embedding columns (hundreds of unnamed dimensions) get the exact finiteness check below only;
    # one GE expectation pair per column would cost seconds and say nothing more
    for c in (c for c in feature_columns if not c.startswith("musicnn_")):
        lo, hi = _range_for(c, sample_rate)
        exps.append(E.ExpectColumnValuesToNotBeNull(column=c))
        # tolerance for float rounding at the bounds
        pad = 1e-6 * max(1.0, abs(lo), abs(hi)) if abs(hi) < BIG else 0.0
        exps.append(E.ExpectColumnValuesToBeBetween(column=c, min_value=lo - pad, max_value=hi + pad))
    # cheap exact check first (GE's report is the detailed one)
    vals = df[feature_columns].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(vals)):
        bad = [feature_columns[j] for j in np.flatnonzero(~np.isfinite(vals).all(axis=0))][:5]
        raise DataError(f"validation of features failed: non-finite values in {bad}")
    return run_suite("features", df, exps, report_dir)


def validate_store(
    path: str | Path, *, report_dir: Path | None, engine: str | None = None
) -> dict:
    """The HDF5 metadata suite: attributes complete, shapes agree, per-track table consistent.

    Structural problems (missing attributes/datasets, shapes) raise at once; the per-track table
    goes through :func:`mgr.data.validation.run_checks` (exact NumPy checks; great_expectations only
    on a failure or with ``engine="ge"`` / ``MGR_VALIDATION_ENGINE=ge``).
    """
    cols, checks = store_checks(path)
    return run_checks("spectrogram_store", cols, checks, report_dir, engine=engine)


def store_checks(path: str | Path) -> tuple[dict, list]:
    """The store's structural checks (raising :class:`DataError`), then its per-track columns and
    the expectations on them: ``(columns, [(expectation, kwargs), ...])`` for ``run_checks``."""
    import h5py

    path = Path(path)
    required_attrs = ("format_version", "frontend", "audio", "labels", "tag_vocab", "versions", "content_hash", "n_tracks")
    required_tracks = ("track_id", "path", "genre_idx", "split", "fold", "offset", "n_valid_frames", "tempo_bpm",
                       "tags", "frame_sum", "frame_sumsq")
    problems: list[str] = []
    with h5py.File(path, "r") as h5:
        a = h5.attrs
        problems += [f"attr {k} missing" for k in required_attrs if k not in a]
        if "spec" not in h5:
            problems.append("dataset spec missing")
        if "tracks" not in h5:
            problems.append("group tracks missing")
        if problems:
            raise DataError(f"validation of spectrogram store failed: {'; '.join(problems)}")
        fe = json.loads(a["frontend"])
        labels = json.loads(a["labels"])
        tag_vocab = json.loads(a["tag_vocab"])
        for k in ("sr", "n_fft", "hop", "n_mels", "fmin", "fmax", "kind", "ref", "top_db"):
            if k not in fe:
                problems.append(f"frontend param {k} missing")
        g = h5["tracks"]
        problems += [f"tracks/{k} missing" for k in required_tracks if k not in g]
        if problems:
            raise DataError(f"validation of spectrogram store failed: {'; '.join(problems)}")
        spec = h5["spec"]
        n = int(a["n_tracks"])
        n_mels = int(fe["n_mels"])
        if spec.ndim != 2 or spec.shape[1] != n_mels:
            problems.append(f"spec shape {spec.shape} does not match n_mels {n_mels}")
        for k in required_tracks:
            if g[k].shape[0] != n:
                problems.append(f"tracks/{k} has {g[k].shape[0]} rows, n_tracks is {n}")
        if g["tags"].ndim != 2 or g["tags"].shape[1] != len(tag_vocab):
            problems.append(f"tracks/tags shape {g['tags'].shape} does not match tag_vocab ({len(tag_vocab)})")
        for k in ("frame_sum", "frame_sumsq"):
            if g[k].ndim != 2 or g[k].shape[1] != n_mels:
                problems.append(f"tracks/{k} shape {g[k].shape} does not match n_mels {n_mels}")
        if "stats" not in h5 or "mean" not in h5["stats"] or "std" not in h5["stats"]:
            problems.append("stats/mean or stats/std missing")
        else:
            for k in ("mean", "std"):
                if h5["stats"][k].shape != (n_mels,):
                    problems.append(f"stats/{k} shape {h5['stats'][k].shape} != ({n_mels},)")
        if problems:
            raise DataError(f"validation of spectrogram store failed: {'; '.join(problems)}")
        cols = {
            "track_id": np.array(g["track_id"].asstr()[...], dtype=object),
            "genre_idx": g["genre_idx"][...],
            "split": np.array(g["split"].asstr()[...], dtype=object),
            "offset": g["offset"][...],
            "n_valid_frames": g["n_valid_frames"][...],
        }
        total = int(spec.shape[0])
    cols["end"] = cols["offset"] + cols["n_valid_frames"]
    # each track's frame range must end at or before the next one starts (no overlap)
    order = np.argsort(cols["offset"], kind="stable")
    next_start = np.append(cols["offset"][order][1:], total).astype(np.float64)
    gap = np.empty(len(order), dtype=np.float64)
    gap[order] = next_start - cols["end"][order]
    cols["gap_to_next"] = gap
    checks = [
        ("expect_table_row_count_to_equal", {"value": n}),
        ("expect_column_values_to_not_be_null", {"column": "track_id"}),
        ("expect_column_values_to_be_unique", {"column": "track_id"}),
        ("expect_column_values_to_be_between", {"column": "genre_idx", "min_value": 0,
                                                "max_value": max(len(labels) - 1, 0)}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": ["train", "val", "test"]}),
        ("expect_column_values_to_be_between", {"column": "n_valid_frames", "min_value": 1}),
        ("expect_column_values_to_be_between", {"column": "offset", "min_value": 0}),
        ("expect_column_values_to_be_between", {"column": "end", "max_value": total}),
        ("expect_column_values_to_be_between", {"column": "gap_to_next", "min_value": 0}),
    ]
    return cols, checks
