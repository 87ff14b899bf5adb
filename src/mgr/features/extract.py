"""Dataset-level plumbing shared by the extraction stages (spectrogram and features).

:func:`load_inputs` joins ``tracks.csv`` and ``split.csv`` (only tracks present in both are
processed); :func:`run_parallel` maps a worker function over jobs in a process pool with a
bounded number of jobs in flight and streams each result to a callback as it completes (so memory
stays bounded whatever the dataset size), with a tqdm progress bar; :func:`probe_files` reads
every file's header in parallel. Kept apart from :mod:`mgr.features.store` and :mod:`mgr.features.tables`
so that a change to one front end does not invalidate the other stage.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import audio_info
from mgr.data.tracks import load_tracks
from mgr.errors import AudioError, DataError
from mgr.io import process_pool

__all__ = ["TrackTable", "as_track_table", "load_inputs", "probe_files", "read_inputs", "run_parallel",
           "skip_on_failure"]


def load_inputs(tracks_csv: str | os.PathLike, split_csv: str | os.PathLike) -> Any:
    """Tracks present in both ``tracks.csv`` and ``split.csv`` (absolute paths), sorted by id.

    Returns a DataFrame with ``track_id, path, genre, split, fold`` (+ ``tempo_bpm``, ``tags``
    when present).
    """
    import pandas as pd

    tracks_csv, split_csv = Path(tracks_csv), Path(split_csv)
    for p in (tracks_csv, split_csv):
        if not p.exists():
            raise DataError(f"{p} not found (run the fetch and split stages first)")
    tracks = load_tracks(tracks_csv.parent)
    split = pd.read_csv(split_csv, dtype={"track_id": str})
    for col, df, name in (("track_id", tracks, "tracks.csv"), ("path", tracks, "tracks.csv"),
                          ("genre", tracks, "tracks.csv"), ("track_id", split, "split.csv"),
                          ("split", split, "split.csv")):
        if col not in df.columns:
            raise DataError(f"{name} has no {col!r} column")
    tracks = tracks.copy()
    tracks["track_id"] = tracks["track_id"].astype(str)
    keep = ["track_id", "split"] + (["fold"] if "fold" in split.columns else [])
    df = tracks.drop(columns=[c for c in ("split", "fold") if c in tracks.columns]).merge(
        split[keep], on="track_id", how="inner"
    )
    if "fold" not in df.columns:
        df["fold"] = -1
    df["fold"] = df["fold"].fillna(-1).astype(int)
    bad = set(df["split"]) - {"train", "val", "test"}
    if bad:
        raise DataError(f"split.csv: unknown split values {sorted(bad)} (allowed: train, val, test)")
    return df.sort_values("track_id", kind="stable").reset_index(drop=True)


#: the columns the spectrogram store needs (the optional ones where tracks.csv has them)
STORE_COLUMNS = ("track_id", "path", "genre", "split", "fold")
OPTIONAL_STORE_COLUMNS = ("tempo_bpm", "tags")


@dataclass(frozen=True)
class TrackTable:
    """Columns of the tracks to extract, as plain arrays (what :func:`read_inputs` gives without
    pandas): ``track_id``, ``path`` (absolute), ``genre``, ``split`` (str), ``fold`` (int, -1 if
    none) and, where the dataset has them, ``tempo_bpm`` (float, NaN = unknown) and ``tags``
    (``|``-separated str; "" = none)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["track_id"])

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, idx: Any) -> "TrackTable":
        return TrackTable({k: v[np.asarray(idx, dtype=np.int64)] for k, v in self.columns.items()})


def as_track_table(tracks: Any) -> TrackTable:
    """A :class:`TrackTable` from itself or from :func:`load_inputs`' DataFrame (same values)."""
    if isinstance(tracks, TrackTable):
        return tracks
    cols: dict[str, np.ndarray] = {}
    for c in STORE_COLUMNS + OPTIONAL_STORE_COLUMNS:
        if c not in tracks.columns:
            continue
        v = tracks[c]
        if c == "fold":
            cols[c] = v.fillna(-1).to_numpy(dtype=np.int64)
        elif c == "tempo_bpm":
            cols[c] = v.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            cols[c] = np.array([x if isinstance(x, str) else ("" if c == "tags" else str(x)) for x in v], dtype=object)
    return TrackTable(cols)


def _float(v: str) -> float:
    try:
        return float(v) if v not in ("", "nan", "NaN") else float("nan")
    except ValueError:
        return float("nan")


def read_inputs(tracks_csv: str | os.PathLike, split_csv: str | os.PathLike) -> TrackTable:
    """:func:`load_inputs` for the spectrogram store, with the csv module instead of pandas (the
    stage then never imports pandas): the same tracks, order and values (tested equal)."""
    tracks_csv, split_csv = Path(tracks_csv), Path(split_csv)
    for p in (tracks_csv, split_csv):
        if not p.exists():
            raise DataError(f"{p} not found (run the fetch and split stages first)")

    def rows(p: Path) -> tuple[list[str], list[dict[str, str]]]:
        try:
            with open(p, newline="", encoding="utf-8") as f:
                r = csv.DictReader(f)
                return list(r.fieldnames or []), list(r)
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{p} is not a readable CSV table: {type(e).__name__}") from None

    t_cols, t_rows = rows(tracks_csv)
    s_cols, s_rows = rows(split_csv)
    for col, have, name in (("track_id", t_cols, "tracks.csv"), ("path", t_cols, "tracks.csv"),
                            ("genre", t_cols, "tracks.csv"), ("track_id", s_cols, "split.csv"),
                            ("split", s_cols, "split.csv")):
        if col not in have:
            raise DataError(f"{name} has no {col!r} column")
    assigned = {r["track_id"]: (r["split"], int(_float(r["fold"])) if "fold" in s_cols and r["fold"] not in ("", "nan", "NaN") else -1)
                for r in s_rows}
    base = tracks_csv.parent.resolve()
    picked = [r for r in t_rows if r["track_id"] in assigned]
    bad = sorted({assigned[r["track_id"]][0] for r in picked} - {"train", "val", "test"})
    if bad:
        raise DataError(f"split.csv: unknown split values {bad} (allowed: train, val, test)")
    picked.sort(key=lambda r: r["track_id"])
    cols: dict[str, np.ndarray] = {
        "track_id": np.array([r["track_id"] for r in picked], dtype=object),
        "path": np.array([r["path"] if Path(r["path"]).is_absolute() else str(base / r["path"]) for r in picked], dtype=object),
        "genre": np.array([r["genre"] for r in picked], dtype=object),
        "split": np.array([assigned[r["track_id"]][0] for r in picked], dtype=object),
        "fold": np.array([assigned[r["track_id"]][1] for r in picked], dtype=np.int64),
    }
    if "tempo_bpm" in t_cols:
        cols["tempo_bpm"] = np.array([_float(r["tempo_bpm"]) for r in picked], dtype=np.float64)
    if "tags" in t_cols:
        cols["tags"] = np.array([r["tags"] or "" for r in picked], dtype=object)
    return TrackTable(cols)


def skip_on_failure(i: int, path: str, work: Callable[[], Any]) -> tuple[int, Any, str | None]:
    """Run one track's ``work`` in a worker: ``(i, result, None)``, or ``(i, None, reason)`` when
    it fails, so that one bad file is skipped and reported instead of killing the stage."""
    try:
        return i, work(), None
    except AudioError as e:
        return i, None, str(e)
    except Exception as e:  # a decoder or DSP bug on one file must not kill the stage
        return i, None, f"audio: {path}: {type(e).__name__}: {e}"[:300]


def _limit_threads() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - optional
        pass


def _probe(path: str) -> tuple[int, int] | str:
    try:
        frames, sr, _ = audio_info(path)
        return frames, sr
    except AudioError as e:
        return str(e)


def run_parallel(
    fn: Callable, jobs: Iterable[tuple], n_jobs: int, workers: int, on_result: Callable, desc: str, progress: bool
) -> None:
    """Run ``fn`` over ``jobs`` with at most ``2 * workers`` in flight; stream results to ``on_result``."""
    from tqdm import tqdm

    bar = tqdm(total=n_jobs, desc=desc, unit="clip", disable=not progress, mininterval=0.5, smoothing=0.1)
    it = iter(jobs)
    try:
        if workers <= 1:
            _limit_threads()
            for job in it:
                on_result(fn(job))
                bar.update()
            return
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None

        with process_pool(workers, mp_context=ctx, initializer=_limit_threads) as ex:
            pending = set()
            for job in it:
                pending.add(ex.submit(fn, job))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_result(fut.result())
                    bar.update()
                    job = next(it, None)
                    if job is not None:
                        pending.add(ex.submit(fn, job))
    finally:
        bar.close()


def probe_files(paths: list[str], workers: int) -> list[tuple[int, int] | str]:
    """Header probe of every file (frames, samplerate) or an error message, in parallel."""
    if workers <= 1 or len(paths) < 64:
        return [_probe(p) for p in paths]
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None

    with process_pool(workers, mp_context=ctx) as ex:
        return list(ex.map(_probe, paths, chunksize=64))
