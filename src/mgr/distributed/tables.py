"""Sharded feature extraction: one Parquet part per fixed range of tracks, concatenated in order.

The same ranges as the spectrogram shards (:func:`mgr.distributed.engine.shard_ranges`,
``distributed.shard_tracks`` tracks each): each task computes its tracks' features (handcrafted
sets and the pretrained embeddings alike, :func:`mgr.features.tables.extract_features`) and writes
``<table>.shards/part-<kkkkk>.parquet`` (its rows in track order, its job key and skipped tracks in
the schema metadata); the parent concatenates the parts in shard order into the one table (one
row group per shard), streaming part by part. A part whose job key matches is not recomputed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import describe
from mgr.distributed.engine import (
    _atomic_write,
    _job_key,
    map_tasks,
    shard_dir,
    shard_ranges,
)
from mgr.errors import DataError
from mgr.features.tables import _feat_job, feature_names
from mgr.io import atomic_path
from mgr.params import parse_feature_sets
from mgr.pretrained.builtin import ensure_builtin

__all__ = ["build_sharded_feature_table", "feature_shard"]

PART_FMT = "part-{:05d}.parquet"


def feature_shard(task: dict) -> dict:
    """Worker: the feature rows of one shard -> ``part-<k>.parquet`` (unless complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(task["path"])
    try:
        md = pq.read_metadata(path).metadata or {}
        if md.get(b"mgr_job_key", b"").decode() == task["key"]:
            return {"shard": task["shard"], "skipped": json.loads(md[b"mgr_skipped"]), "n": pq.read_metadata(path).num_rows,
                    "computed": False}
    except (OSError, pa.ArrowInvalid, KeyError):
        pass
    names = feature_names(task["feature_set"])
    ids, vals, skipped = [], [], []
    for j, p in enumerate(task["paths"]):
        _, v, reason = _feat_job((j, p, task["audio"], task["feature_set"]))
        if v is None:
            skipped.append({"track_id": task["ids"][j], "path": p, "reason": reason})
        else:
            ids.append(j)
            vals.append(v)
    cols: dict[str, Any] = {c: [task["id_cols"][c][j] for j in ids] for c in task["id_cols"]}
    mat = np.vstack(vals) if vals else np.zeros((0, len(names)))
    for c, col in zip(names, mat.T if vals else [[]] * len(names)):
        cols[c] = np.asarray(col, dtype=np.float64)
    table = pa.table(cols)
    table = table.replace_schema_metadata({"mgr_job_key": task["key"], "mgr_skipped": json.dumps(skipped)})
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return {"shard": task["shard"], "skipped": skipped, "n": len(ids), "computed": True}


def build_sharded_feature_table(
    tracks: Any,
    audio_params: Any,
    feature_set: str,
    out_path: str | os.PathLike,
    *,
    shard_tracks: int,
    workers: int = 1,
    scheduler: str | None = None,
    retries: int = 2,
) -> dict:
    """The sharded counterpart of :func:`mgr.features.tables.build_feature_table` (Parquet only)."""
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    names = feature_names(feature_set)
    audio_d = describe(audio_params)
    df = tracks.reset_index(drop=True)
    if len(df) == 0:
        raise DataError("features: no tracks to process (empty intersection of tracks.csv and split.csv)")
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".parquet":
        raise DataError(f"features: the sharded table is Parquet only, not {out_path.name}")
    kfold = "fold" in df.columns and (df["fold"] >= 0).any()
    id_cols = ["track_id", "split", "genre"] + (["fold"] if kfold else [])
    for fs in parse_feature_sets(feature_set):
        if fs.startswith("musicnn"):  # export the backbone once, before the workers load it

            ensure_builtin(fs)
    sdir = shard_dir(out_path)
    sdir.mkdir(parents=True, exist_ok=True)
    ids = df["track_id"].astype(str).tolist()
    paths = df["path"].astype(str).tolist()
    ranges = shard_ranges(len(df), int(shard_tracks))
    spec = {"audio": audio_d, "feature_set": feature_set, "id_cols": id_cols}
    tasks = []
    for k, (a, b) in enumerate(ranges):
        part = {c: (df[c].iloc[a:b].astype("int64") if c == "fold" else df[c].iloc[a:b].astype(str)).tolist()
                for c in id_cols}
        tasks.append({"shard": k, "path": str((sdir / PART_FMT.format(k)).resolve()), "audio": audio_d,
                      "feature_set": feature_set, "paths": paths[a:b], "ids": ids[a:b], "id_cols": part,
                      "key": _job_key("features", {**spec, "rows": part}, ids[a:b], paths[a:b])})
    wanted = {PART_FMT.format(k) for k in range(len(ranges))}
    for f in sdir.glob("*.parquet"):
        if f.name not in wanted:
            f.unlink()
    results: dict[int, dict] = {}
    facts = map_tasks(feature_shard, tasks, lambda r: results.__setitem__(r["shard"], r),
                      workers=workers, scheduler=scheduler, retries=retries)
    n_written = 0
    with atomic_path(out_path) as tmp:
        writer = None
        try:
            for k in range(len(ranges)):
                t = pq.read_table(sdir / PART_FMT.format(k)).replace_schema_metadata(None)
                if t.num_rows == 0:
                    continue
                if writer is None:
                    schema = t.schema
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                writer.write_table(t.cast(schema))
                n_written += t.num_rows
        finally:
            if writer is not None:
                writer.close()
        if n_written == 0:
            raise DataError("features: no track could be decoded")
    skipped = sorted((s for r in results.values() for s in r["skipped"]), key=lambda r: r["track_id"])
    return {
        "n_tracks": n_written, "n_skipped": len(skipped), "skipped": skipped, "n_features": len(names),
        "feature_set": feature_set, "format": "parquet", "n_shards": len(ranges),
        "seconds": round(time.perf_counter() - t0, 3),
        # run facts (mgr.runs.RUN_KEYS: kept out of the metrics): what ran the shards, and how many
        "workers": {**facts, "shards_computed": sum(1 for r in results.values() if r["computed"])},
    }
