"""Sharded extraction: one file per fixed range of tracks, written by any worker, read as one store.

Spectrogram store (``distributed.shard_tracks: N > 0``)
------------------------------------------------------
Tracks (sorted by ``track_id``, as :func:`mgr.features.extract.load_inputs` gives them) are cut into
shards of ``N`` consecutive tracks: shard ``k`` holds tracks ``[k*N, (k+1)*N)`` whatever the
number of workers. Each shard task probes its files, computes their spectrograms one clip at a
time (a worker holds one clip plus the shard's per-track sums) and writes
``<store>.shards/shard-<kkkkk>.h5``:

``/spec`` float32 ``(rows, n_mels)`` (contiguous, or chunked + compressed by
``spectrogram.compression``), ``/n_frames`` int64, ``/sums`` ``/sumsq`` float64 ``(n, n_mels)``,
``/digest`` uint8 ``(n, 32)`` (sha256 of each track's spectrogram), ``/reason`` str ("" = ok);
attrs ``job_key`` (sha256 of the front end, audio policy, track ids and paths), ``shard``,
``first``, ``n``.

The parent then writes the index, ``<store>`` itself: the same ``/tracks``, ``/stats`` and attrs as
:func:`mgr.features.store.build_store` (same offsets, same content hash) and a ``/spec`` that is an
HDF5 **virtual dataset** mapping each shard's rows (source files named relative to the index, so
the pair moves together). :class:`mgr.features.store.SpectrogramStore` opens it unchanged; when the
shards are uncompressed it memory-maps each one (:class:`mgr.distributed.reader.ShardRows`),
zero-copy as for one file.

Determinism: fixed shard ranges, shards written with fixed settings (no timestamps:
``track_times=False``; libver ``earliest``; fixed chunking), the index written from the results
sorted by shard, so the bytes of every file are the same for 1 worker, N local workers or a
remote cluster (tested). A shard whose file exists with the same ``job_key`` is not recomputed:
a failed shard is recomputed alone, and a killed run resumes.

The feature table's parts: :mod:`mgr.distributed.tables`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import describe, expected_samples
from mgr.distributed.engine import (
    _atomic_write,
    _job_key,
    map_tasks,
    shard_dir,
    shard_ranges,
)
from mgr.errors import DataError
from mgr.features.extract import as_track_table, probe_files
from mgr.features.store import _check_unique, _spec_job, _write_index, frontend_config
from mgr.io import atomic_path

__all__ = ["build_sharded_store", "shard_dir", "shard_ranges", "spectrogram_shard"]

SHARD_FMT = "shard-{:05d}.h5"


# ------------------------------------------------------------------------ spectrogram shards
def _read_shard_meta(path: Path, key: str) -> dict | None:
    """The small per-track arrays of a complete shard with job key ``key`` (else None)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("job_key") != key:
                return None
            return {
                "shard": int(h5.attrs["shard"]), "rows": int(h5.attrs["rows"]),
                "n_frames": h5["n_frames"][...], "sums": h5["sums"][...], "sumsq": h5["sumsq"][...],
                "digest": h5["digest"][...], "reason": list(h5["reason"].asstr()[...]), "computed": False,
            }
    except (OSError, KeyError):
        return None


def spectrogram_shard(task: dict) -> dict:
    """Worker: compute shard ``task['shard']`` (unless complete) and return its per-track arrays."""
    import h5py

    path = Path(task["path"])
    meta = _read_shard_meta(path, task["key"])
    if meta is not None:
        return meta
    fe, audio_d, paths = task["fe"], task["audio"], task["paths"]
    n, rows = len(paths), fe["n_mels"]
    reason = [""] * n
    n_frames = np.zeros(n, dtype=np.int64)
    n_samples = np.zeros(n, dtype=np.int64)
    for j, pr in enumerate(probe_files(paths, 1)):
        if isinstance(pr, str):
            reason[j] = pr
            continue
        ns = expected_samples(pr[0], pr[1], sr=fe["sr"], offset_s=audio_d["offset_s"],
                              duration_s=audio_d["duration_s"], pad=audio_d["pad"])
        if ns <= 0:
            reason[j] = f"audio: {paths[j]}: no samples after offset {audio_d['offset_s']:g} s"
            continue
        n_samples[j] = ns
        n_frames[j] = 1 + ns // fe["hop"]
    offsets = np.concatenate([[0], np.cumsum(n_frames)[:-1]]).astype(np.int64)
    total = int(n_frames.sum())
    sums = np.zeros((n, rows), dtype=np.float64)
    sumsq = np.zeros((n, rows), dtype=np.float64)
    digest = np.zeros((n, 32), dtype=np.uint8)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", libver="earliest") as h5:
            if task["compression"] != "none":
                med = int(np.median(n_frames[n_frames > 0])) if total else 1
                spec = h5.create_dataset("spec", shape=(max(total, 1), rows), dtype="f4", track_times=False,
                                         chunks=(max(1, min(med, total or 1)), rows),
                                         compression=task["compression"], shuffle=True)
            else:
                spec = h5.create_dataset("spec", shape=(max(total, 1), rows), dtype="f4", track_times=False)
            for j in range(n):
                if reason[j]:
                    continue
                _, arr, why = _spec_job((j, paths[j], int(n_samples[j]), audio_d, fe))
                if arr is None or arr.shape != (n_frames[j], rows):
                    reason[j] = why or f"unexpected shape {getattr(arr, 'shape', None)}"
                    continue  # its rows stay zeros, referenced by no track (as in one file)
                spec[offsets[j] : offsets[j] + n_frames[j]] = arr
                a64 = arr.astype(np.float64)
                sums[j] = a64.sum(axis=0)
                sumsq[j] = np.einsum("ij,ij->j", a64, a64)
                digest[j] = np.frombuffer(hashlib.sha256(arr.tobytes()).digest(), dtype=np.uint8)
            kw = {"track_times": False}
            h5.create_dataset("n_frames", data=n_frames, **kw)
            h5.create_dataset("sums", data=sums, **kw)
            h5.create_dataset("sumsq", data=sumsq, **kw)
            h5.create_dataset("digest", data=digest, **kw)
            h5.create_dataset("reason", data=reason, dtype=h5py.string_dtype("utf-8"), **kw)
            a = h5.attrs
            a["job_key"] = task["key"]
            a["shard"] = int(task["shard"])
            a["first"] = int(task["first"])
            a["n"] = n
            a["rows"] = total

    _atomic_write(path, write)
    return {"shard": int(task["shard"]), "rows": total, "n_frames": n_frames, "sums": sums, "sumsq": sumsq,
            "digest": digest, "reason": reason, "computed": True}


def build_sharded_store(
    tracks: Any,
    audio_params: Any,
    spectrogram_params: Any,
    out_path: str | os.PathLike,
    *,
    shard_tracks: int,
    workers: int = 1,
    scheduler: str | None = None,
    retries: int = 2,
) -> dict:
    """The sharded counterpart of :func:`mgr.features.store.build_store` (module doc).

    Returns the same report (``n_tracks``, ``n_skipped``, ``skipped``, ``total_frames``,
    ``content_hash``, ...) plus ``n_shards``; ``workers`` holds the run facts (``engine``,
    ``workers``, ``worker_peak_rss_mb``, ``shards_computed``).
    """
    import h5py

    t0 = time.perf_counter()
    fe = frontend_config(audio_params, spectrogram_params)
    audio_d = describe(audio_params)
    df = as_track_table(tracks)
    if len(df) == 0:
        raise DataError("spectrogram: no tracks to process (empty intersection of tracks.csv and split.csv)")
    _check_unique(df)
    out_path = Path(out_path)
    sdir = shard_dir(out_path)
    sdir.mkdir(parents=True, exist_ok=True)
    ids = [str(x) for x in df["track_id"]]
    paths = [str(x) for x in df["path"]]
    ranges = shard_ranges(len(df), int(shard_tracks))
    spec = {"fe": fe, "audio": audio_d, "compression": spectrogram_params.compression}
    tasks = [{"shard": k, "first": a, "path": str((sdir / SHARD_FMT.format(k)).resolve()), "fe": fe,
              "audio": audio_d, "compression": spectrogram_params.compression, "paths": paths[a:b],
              "key": _job_key("spectrogram", spec, ids[a:b], paths[a:b])} for k, (a, b) in enumerate(ranges)]
    wanted = {SHARD_FMT.format(k) for k in range(len(ranges))}
    for f in sdir.glob("*.h5"):  # shards of an earlier, larger run
        if f.name not in wanted:
            f.unlink()
    results: dict[int, dict] = {}
    facts = map_tasks(spectrogram_shard, tasks, lambda r: results.__setitem__(r["shard"], r),
                      workers=workers, scheduler=scheduler, retries=retries)

    labels = sorted({str(g) for g in df["genre"]})
    n_frames = np.concatenate([results[k]["n_frames"] for k in range(len(ranges))])
    sums = np.concatenate([results[k]["sums"] for k in range(len(ranges))])
    sumsq = np.concatenate([results[k]["sumsq"] for k in range(len(ranges))])
    reasons = [r for k in range(len(ranges)) for r in results[k]["reason"]]
    digests = [bytes(d) for k in range(len(ranges)) for d in results[k]["digest"]]
    shard_rows = [int(results[k]["rows"]) for k in range(len(ranges))]
    offsets = np.concatenate([[0], np.cumsum(n_frames)[:-1]]).astype(np.int64)
    total = int(n_frames.sum())
    ok = np.array([not r for r in reasons])
    skipped = [{"track_id": ids[i], "path": paths[i], "reason": reasons[i]} for i in np.flatnonzero(~ok)]
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise DataError(f"spectrogram: no track could be decoded ({len(skipped)} skipped)")
    rows = fe["n_mels"]
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w", libver="earliest") as h5:
            layout = h5py.VirtualLayout(shape=(max(total, 1), rows), dtype="f4")
            start = 0
            for k, nrow in enumerate(shard_rows):
                if nrow:
                    src = h5py.VirtualSource(f"{sdir.name}/{SHARD_FMT.format(k)}", "spec", shape=(nrow, rows))
                    layout[start : start + nrow] = src
                start += nrow
            # as h5py's create_virtual_dataset, but without the creation time it would stamp
            dcpl = layout._get_dcpl(h5.filename)
            dcpl.set_obj_track_times(False)
            dcpl.set_fill_value(np.array([0.0], dtype="f4"))
            h5py.h5d.create(h5.id, b"spec", h5py.h5t.IEEE_F32LE,
                            h5py.h5s.create_simple((max(total, 1), rows)), dcpl=dcpl)
            content_hash = _write_index(h5, df, keep, offsets, n_frames, sums, sumsq, digests, labels, fe,
                                        audio_d, spectrogram_params.compression, total)
            h5.attrs["shards"] = json.dumps({"dir": sdir.name, "n": len(ranges), "shard_tracks": int(shard_tracks)})
    skipped.sort(key=lambda r: r["track_id"])
    return {
        "n_tracks": int(keep.size), "n_skipped": len(skipped), "skipped": skipped, "total_frames": total,
        "n_mels": rows, "labels": labels, "content_hash": content_hash, "n_shards": len(ranges),
        "seconds": round(time.perf_counter() - t0, 3),
        # run facts (mgr.runs.RUN_KEYS: kept out of the metrics): what ran the shards, and how many
        "workers": {**facts, "shards_computed": sum(1 for r in results.values() if r["computed"])},
    }
