"""Data validation between stages with great-expectations (ephemeral context, no network).

:func:`run_suite` is the shared plumbing: it validates a DataFrame against a list of
expectations, writes the full JSON report to ``reports/validation/<name>.json`` and, on
failure, raises :class:`mgr.errors.DataError` with a short report naming each failed
expectation and a few example values.

:func:`run_checks` evaluates the same kind of expectations exactly with NumPy and imports
great_expectations (~2 s per process) only when one fails (then :func:`run_suite` writes GE's
report and raises) or when ``MGR_VALIDATION_ENGINE=ge``; the report it writes on success has
GE's layout with ``meta.engine = "numpy"``.

Suites here: :func:`validate_tracks` (``tracks.csv``) and :func:`validate_split`
(``split.csv``); ``mgr.data.validation.features`` holds the feature-table and HDF5 suites.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgr.data.split import duplicate_sets
from mgr.errors import DataError, StorageError, storage_error
from mgr.io import atomic_path

MAX_EXAMPLES = 5


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def run_suite(name: str, df: Any, expectations: list, report_dir: Path | None) -> dict:
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
        _write_report(Path(report_dir) / f"{name}.json", report)
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


# ------------------------------------------------------------------ exact NumPy pre-check
# great_expectations costs ~2 s of import per process; the stages that validate large numeric
# outputs (the spectrogram store) evaluate the same expectations exactly with NumPy first and only
# build the GE suite -- its report and its failure message -- when a check fails or when asked
# (``engine="ge"`` or ``MGR_VALIDATION_ENGINE=ge``).
ENGINE_ENV = "MGR_VALIDATION_ENGINE"
PARTIAL = 20  # GE's default partial_unexpected_list length


def _is_null(x: Any) -> Any:
    import numpy as np

    x = np.asarray(x)
    if x.dtype.kind == "f":
        return np.isnan(x)
    if x.dtype.kind == "O":
        return np.fromiter((v is None or (isinstance(v, float) and v != v) for v in x), bool, x.size)
    return np.zeros(x.shape, dtype=bool)


def _check(kind: str, kw: dict, columns: dict, n_rows: int) -> tuple[bool, dict]:
    """One expectation evaluated with NumPy: ``(success, GE-shaped result dict)``."""
    import numpy as np

    if kind == "expect_table_row_count_to_equal":
        return n_rows == kw["value"], {"observed_value": n_rows}
    if kind == "expect_table_row_count_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        return (lo is None or n_rows >= lo) and (hi is None or n_rows <= hi), {"observed_value": n_rows}
    x = np.asarray(columns[kw["column"]])
    null = _is_null(x)
    vals = x[~null]
    if kind == "expect_column_values_to_not_be_null":
        bad = null
        shown = x[bad]
    else:
        if kind == "expect_column_values_to_be_unique":
            _, inv, cnt = np.unique(vals, return_inverse=True, return_counts=True)
            bad_nn = cnt[inv] > 1
        elif kind == "expect_column_values_to_be_between":
            lo, hi = kw.get("min_value"), kw.get("max_value")
            bad_nn = np.zeros(vals.shape, dtype=bool)
            if lo is not None:
                bad_nn |= vals < lo
            if hi is not None:
                bad_nn |= vals > hi
        elif kind == "expect_column_values_to_be_in_set":
            allowed = set(kw["value_set"])
            bad_nn = np.fromiter((v not in allowed for v in vals.tolist()), bool, vals.size)
        else:  # pragma: no cover - only the kinds above are used with the NumPy engine
            raise ValueError(f"no NumPy evaluation for {kind}")
        bad = np.zeros(x.shape, dtype=bool)
        bad[~null] = bad_nn
        shown = x[bad]
    n_bad, n_missing, n = int(bad.sum()), int(null.sum()), int(x.size)
    nonmissing = n - n_missing
    pct = (100.0 * n_bad / (nonmissing if kind != "expect_column_values_to_not_be_null" else n)) if n else 0.0
    res = {
        "element_count": n,
        "unexpected_count": n_bad,
        "unexpected_percent": pct,
        "partial_unexpected_list": [v.item() if hasattr(v, "item") else v for v in shown[:PARTIAL]],
        "partial_unexpected_index_list": np.flatnonzero(bad)[:PARTIAL].tolist(),
    }
    if kind != "expect_column_values_to_not_be_null":
        res["missing_count"] = n_missing
        res["missing_percent"] = 100.0 * n_missing / n if n else 0.0
    return n_bad == 0, res


def _ge_class(kind: str) -> str:
    return "".join(w.capitalize() for w in kind.split("_"))


def run_checks(
    name: str,
    columns: dict,
    checks: list[tuple[str, dict]],
    report_dir: Path | None,
    *,
    engine: str | None = None,
) -> dict:
    """Validate equal-length ``columns`` (name -> 1-D array) against ``checks`` (GE expectation
    names in snake case + their kwargs, e.g. ``("expect_column_values_to_be_unique", {"column":
    "track_id"})``), exactly, with NumPy; great_expectations is imported only when needed.

    ``engine``: ``"auto"`` (default; ``$MGR_VALIDATION_ENGINE`` when set): the checks run in
    NumPy; if all pass, ``<report_dir>/<name>.json`` gets a report in GE's layout (``success``,
    ``results`` with ``expectation_config`` / ``result``, ``statistics``, ``meta.engine="numpy"``);
    if any fails, the same expectations run through :func:`run_suite` (GE's full report and its
    one-line :class:`DataError`). ``"ge"``: straight to :func:`run_suite` (as before).
    """
    import numpy as np

    engine = engine or os.environ.get(ENGINE_ENV, "auto")
    if engine not in ("auto", "ge"):
        raise ValueError(f"validation engine {engine!r} (allowed: auto, ge)")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"run_checks: columns of different lengths {sorted(lengths)}")
    n_rows = lengths.pop() if lengths else 0
    results, failed = [], []
    if engine == "auto":
        for kind, kw in checks:
            ok, res = _check(kind, kw, columns, n_rows)
            results.append({"success": bool(ok), "expectation_config": {"type": kind, "kwargs": dict(kw), "meta": {}},
                            "result": res, "meta": {}, "exception_info": {"raised_exception": False}})
            if not ok:
                failed.append(results[-1])
    if engine == "ge" or failed:
        import pandas as pd

        E = _gx().expectations
        df = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
        report = run_suite(name, df, [getattr(E, _ge_class(k))(**kw) for k, kw in checks], report_dir)
        if not failed:
            return report
        # GE passed what NumPy failed: cannot happen for the kinds above; refuse anyway
        lines = [f"{r['expectation_config']['type']}({r['expectation_config']['kwargs'].get('column', '')}): "
                 f"{r['result'].get('unexpected_count', r['result'].get('observed_value'))} unexpected, e.g. "
                 + ", ".join(_short(x) for x in r["result"].get("partial_unexpected_list", [])[:MAX_EXAMPLES])
                 for r in failed]
        raise DataError(f"validation of {name} failed (NumPy check): " + " | ".join(lines))
    import datetime

    n_ok = sum(r["success"] for r in results)
    report = {
        "success": True,
        "results": results,
        "suite_name": name,
        "suite_parameters": {},
        "statistics": {"evaluated_expectations": len(results), "successful_expectations": n_ok,
                       "unsuccessful_expectations": len(results) - n_ok,
                       "success_percent": 100.0 * n_ok / len(results) if results else None},
        "meta": {"engine": "numpy", "row_count": n_rows,
                 "validation_time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ"),
                 "note": f"exact NumPy evaluation of these expectations; great_expectations builds the "
                         f"report when one fails, or always with {ENGINE_ENV}=ge"},
        "id": None,
    }
    if report_dir is not None:
        _write_report(Path(report_dir) / f"{name}.json", report)
    return report


def _write_report(path: Path, report: dict) -> None:
    """Write a JSON report; an unwritable place (read-only, full, no permission) is one line."""

    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    except StorageError as e:
        raise StorageError(f"cannot write the validation report {path}: {e}") from None
    except OSError as e:
        se = storage_error(e, path)
        raise StorageError(
            f"cannot write the validation report {path}: {se or (e.strerror or type(e).__name__)}"
        ) from None


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
    report_dir: Path | None,
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
    duplicates: bool = True,
    report_dir: Path | None,
) -> dict:
    """The ``split.csv`` suite: every listed track exists and is in exactly one split.

    With ``grouped`` (the ``group`` strategy), no artist may appear in two splits; in k-fold
    mode, no artist may appear in two folds. With ``duplicates`` (every strategy but
    ``predefined``), no duplicate set (``dup_group`` / ``fingerprint`` of ``tracks.csv``, see
    :func:`mgr.data.split.duplicate_sets`) may appear in two splits (folds in k-fold mode). Tracks absent from ``split.csv`` are allowed only
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
    if duplicates:
        t = tracks.reset_index(drop=True)
        key = duplicate_sets(t)
        if len(key):
            sets = pd.DataFrame({"track_id": t.loc[key.index, "track_id"].astype(str).to_numpy(),
                                 "dup_set": key.to_numpy()})
            merged = df.merge(sets, on="track_id", how="inner")
            unit = "fold" if "fold" in merged.columns else "split"
            n_units = merged.groupby("dup_set")[unit].nunique()
            single = [str(a) for a in n_units.index[n_units.to_numpy() == 1]]
            present = pd.DataFrame({"dup_set": merged["dup_set"].astype(str).drop_duplicates().to_numpy()})
            if len(present):
                # a duplicate set outside the single-part ones has copies in two parts (a leak)
                run_suite(
                    f"split_duplicates_one_{unit}",
                    present,
                    [E.ExpectColumnValuesToBeInSet(column="dup_set", value_set=single)],
                    report_dir,
                )
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
