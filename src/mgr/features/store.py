"""The spectrogram front end and the HDF5 spectrogram store (writer + windowed reader).

Front end
---------
:mod:`mgr.dsp.frontend` (``frontend_config``, ``compute_spectrogram``, re-exported here): the store
holds what that front end computes for every track.

HDF5 layout (``data/spectrograms.h5``, format_version 1)
--------------------------------------------------------
``/spec``  float32 ``(total_frames, n_mels)`` -- **frames-major**: every track is one
    contiguous block of rows ``offset[i] : offset[i] + n_valid_frames[i]``, so a training window
    is a single contiguous read. Uncompressed (``spectrogram.compression: none``, default) the
    dataset is HDF5-contiguous and the reader memory-maps it (``np.memmap`` at the dataset's
    file offset): ``track(i)`` and window reads are zero-copy views (transposed to
    ``(n_mels, frames)``). With ``gzip``/``lzf`` the dataset is chunked (about one track per
    chunk) and read through h5py. Slots of tracks that failed to decode stay as zeros and are
    not referenced by any track.
``/tracks/*``  one entry per stored track, in ``track_id`` order: ``track_id`` (str), ``path``
    (str; relative to the project root when under it), ``genre_idx`` (int32, index into the ``labels`` attr), ``split`` (str, train/val/test),
    ``fold`` (int16, -1 without folds), ``offset`` (int64), ``n_valid_frames`` (int64),
    ``tempo_bpm`` (float32, NaN if unknown), ``tags`` (uint8 ``(n_tracks, n_tags)`` multi-hot),
    ``frame_sum`` / ``frame_sumsq`` (float64 ``(n_tracks, n_mels)``: per-track sums over frames,
    from which train-only statistics of any fold are exact).
``/stats/mean``, ``/stats/std``  per-mel statistics over the frames of **train** tracks only;
    ``/stats/fold_<f>/{mean,std}`` for each fold in k-fold mode (train = neither test nor val fold).
attrs: ``format_version``, ``frontend`` (JSON) and each frontend key as ``fe_<key>``, ``audio``
    (JSON), ``labels`` (JSON list), ``tag_vocab`` (JSON list), ``versions`` (JSON),
    ``content_hash`` (sha256 over the frontend and every track's id + spectrogram bytes),
    ``n_tracks``, ``n_folds``.

Reader: :class:`SpectrogramStore` (see ``docs/ARCHITECTURE.md`` for the contract).

Sharded store (``distributed.shard_tracks > 0``, :mod:`mgr.distributed.shards`): the same file,
whose ``/spec`` is an HDF5 virtual dataset over ``<store>.shards/shard-*.h5``; the reader
memory-maps each shard (:class:`mgr.distributed.reader.ShardRows`). See docs/SCALE.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import describe, expected_samples, fix_length, load_audio
from mgr.audio.windows import hop_for, window_starts
from mgr.data.split import fold_parts
from mgr.distributed.reader import ShardRows
from mgr.dsp.frontend import (  # noqa: F401 - the front end, re-exported for the store's users
    _frames_major,
    _mel_groups,
    compute_spectrogram,
    frontend_config,
    mel_filterbank,
    musicnn_frontend,
)
from mgr.errors import DataError
from mgr.features.extract import (
    TrackTable,
    as_track_table,
    probe_files,
    run_parallel,
    skip_on_failure,
)
from mgr.io import atomic_path, library_versions, n_workers

FORMAT_VERSION = 1
STATS_EPS = 1e-6
PROBE_POOL_MIN = 2000  # header-probe files in a worker pool only above this many

__all__ = [
    "SpectrogramStore",
    "build_store",
    "compute_spectrogram",
    "frontend_config",
    "mel_filterbank",
    "musicnn_frontend",
]


# ------------------------------------------------------------------------------------- inputs
def _check_unique(df: TrackTable) -> None:
    seen: set[str] = set()
    for t in df["track_id"]:
        if t in seen:
            raise DataError(f"spectrogram: duplicate track_id {t!r} in the inputs")
        seen.add(t)


def _tags_of(df: TrackTable) -> tuple[list[str], np.ndarray]:
    if "tags" not in df:
        return [], np.zeros((len(df), 0), dtype=np.uint8)
    lists = [[t.strip() for t in str(v).split("|") if t.strip()] if isinstance(v, str) else [] for v in df["tags"]]
    vocab = sorted({t for ts in lists for t in ts})
    pos = {t: j for j, t in enumerate(vocab)}
    mh = np.zeros((len(df), len(vocab)), dtype=np.uint8)
    for i, ts in enumerate(lists):
        for t in ts:
            mh[i, pos[t]] = 1
    return vocab, mh


# ------------------------------------------------------------------------------------ workers
def _spec_job(args: tuple) -> tuple:
    """Worker: decode one track and compute its frames-major spectrogram (or a failure reason)."""
    i, path, n_samples, audio_d, frontend = args

    def work() -> np.ndarray:
        y = load_audio(
            path, sr=frontend["sr"], offset_s=audio_d["offset_s"], duration_s=audio_d["duration_s"], pad=audio_d["pad"]
        )
        return _frames_major(fix_length(y, n_samples), frontend)

    return skip_on_failure(i, path, work)


# ------------------------------------------------------------------------------------- writer
def build_store(
    tracks: Any,
    audio_params: Any,
    spectrogram_params: Any,
    out_path: str | os.PathLike,
    *,
    workers: int = 0,
    progress: bool = True,
) -> dict:
    """Compute every track's spectrogram in parallel and write the HDF5 store atomically.

    ``tracks`` is a :class:`~mgr.features.extract.TrackTable` (:func:`~mgr.features.extract.read_inputs`)
    or the DataFrame from :func:`~mgr.features.extract.load_inputs` (``track_id, path, genre, split,
    fold`` and optional ``tempo_bpm``, ``tags``). Results stream into a temporary file as they arrive
    (at most ``2 * workers`` clips in memory), which is renamed onto ``out_path`` when complete.
    A file that fails to decode is skipped and reported. Returns a report dict: ``n_tracks``,
    ``n_skipped``, ``skipped`` (``track_id, path, reason``), ``total_frames``, ``seconds``,
    ``content_hash``.
    """
    import h5py

    t0 = time.perf_counter()
    fe = frontend_config(audio_params, spectrogram_params)
    audio_d = describe(audio_params)
    workers = n_workers(workers)
    df = as_track_table(tracks)
    if len(df) == 0:
        raise DataError("spectrogram: no tracks to process (empty intersection of tracks.csv and split.csv)")
    _check_unique(df)
    # import and build once in the parent: forked workers inherit them instead of redoing it
    import scipy.fft  # noqa: F401
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    if fe["kind"] == "logmel":
        _mel_groups(fe["sr"], fe["n_fft"], fe["n_mels"], fe["fmin"], fe["fmax"])
    labels = sorted({str(g) for g in df["genre"]})
    paths = [str(p) for p in df["path"]]

    # 1. header probe -> exact sample and frame counts -> offsets (pre-allocated layout)
    # a header read is ~0.1 ms: a process pool (~40 ms to start) pays off only for thousands of files
    probes = probe_files(paths, workers if len(paths) > PROBE_POOL_MIN else 1)
    skipped: list[dict] = []
    n_samples = np.zeros(len(df), dtype=np.int64)
    ok = np.zeros(len(df), dtype=bool)
    for i, pr in enumerate(probes):
        if isinstance(pr, str):
            skipped.append({"track_id": df["track_id"][i], "path": paths[i], "reason": pr})
            continue
        frames, file_sr = pr
        n = expected_samples(frames, file_sr, sr=fe["sr"], offset_s=audio_d["offset_s"],
                             duration_s=audio_d["duration_s"], pad=audio_d["pad"])
        if n <= 0:
            skipped.append({"track_id": df["track_id"][i], "path": paths[i],
                            "reason": f"audio: {paths[i]}: no samples after offset {audio_d['offset_s']:g} s"})
            continue
        n_samples[i] = n
        ok[i] = True
    n_frames = np.where(ok, 1 + n_samples // fe["hop"], 0).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_frames)[:-1]]).astype(np.int64)
    total = int(n_frames.sum())
    rows = fe["n_mels"]

    sums = np.zeros((len(df), rows), dtype=np.float64)
    sumsq = np.zeros((len(df), rows), dtype=np.float64)
    digests: list[bytes | None] = [None] * len(df)

    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        # default libver: "latest" stamps object headers with times, so identical inputs would give
        # different bytes and DVC would rerun everything downstream of an unchanged store
        with h5py.File(tmp, "w") as h5:
            compression = None if spectrogram_params.compression == "none" else spectrogram_params.compression
            if compression is not None:
                med = int(np.median(n_frames[ok])) if ok.any() else 1
                chunk = (max(1, min(med, total or 1)), rows)
                spec = h5.create_dataset("spec", shape=(max(total, 1), rows), dtype="f4", chunks=chunk,
                                         compression=compression, shuffle=True)
            else:
                spec = h5.create_dataset("spec", shape=(max(total, 1), rows), dtype="f4")

            def on_result(res: tuple) -> None:
                i, arr, reason = res
                if arr is None:
                    skipped.append({"track_id": df["track_id"][i], "path": paths[i], "reason": reason})
                    ok[i] = False
                    return
                if arr.shape != (n_frames[i], rows):  # cannot happen: length is forced; guard anyway
                    skipped.append({"track_id": df["track_id"][i], "path": paths[i],
                                    "reason": f"unexpected shape {arr.shape} != {(int(n_frames[i]), rows)}"})
                    ok[i] = False
                    return
                spec[offsets[i] : offsets[i] + n_frames[i]] = arr
                a64 = arr.astype(np.float64)
                sums[i] = a64.sum(axis=0)
                sumsq[i] = np.einsum("ij,ij->j", a64, a64)
                digests[i] = hashlib.sha256(arr.tobytes()).digest()

            jobs = ((i, paths[i], int(n_samples[i]), audio_d, fe) for i in np.flatnonzero(ok))
            run_parallel(_spec_job, jobs, int(ok.sum()), workers, on_result, "spectrogram", progress)

            keep = np.flatnonzero(ok)
            if keep.size == 0:
                raise DataError(f"spectrogram: no track could be decoded ({len(skipped)} skipped)")
            content_hash = _write_index(h5, df, keep, offsets, n_frames, sums, sumsq, digests, labels, fe,
                                        audio_d, spectrogram_params.compression, total)
    skipped.sort(key=lambda r: str(r["track_id"]))
    return {
        "n_tracks": int(len(keep)),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "total_frames": total,
        "n_mels": rows,
        "labels": labels,
        "content_hash": content_hash,
        "seconds": round(time.perf_counter() - t0, 3),
        "workers": workers,
    }


def _stored_path(p: Any) -> str:
    """A track's path as stored: relative to the working directory (the project root, where every
    stage runs) when it lies under it, else as given -- so a clone elsewhere writes the same bytes."""
    p = str(p)
    try:
        return Path(p).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return p


def _write_index(h5: Any, df: TrackTable, keep: np.ndarray, offsets: np.ndarray, n_frames: np.ndarray,
                 sums: np.ndarray, sumsq: np.ndarray, digests: list, labels: list[str], fe: dict,
                 audio_d: dict, compression: str, total: int) -> str:
    """Write the per-track metadata (``/tracks``), train statistics (``/stats``) and attrs of the
    kept tracks ``keep`` of ``df`` into open file ``h5``; returns the content hash. Shared by
    :func:`build_store` and the sharded store's index (:mod:`mgr.distributed.shards`)."""
    import h5py

    sub = df.take(keep)
    g = h5.create_group("tracks")
    strs = h5py.string_dtype("utf-8")
    g.create_dataset("track_id", data=[str(x) for x in sub["track_id"]], dtype=strs)
    g.create_dataset("path", data=[_stored_path(x) for x in sub["path"]], dtype=strs)
    lab = {l: j for j, l in enumerate(labels)}
    g.create_dataset("genre_idx", data=np.array([lab[str(x)] for x in sub["genre"]], dtype=np.int32))
    g.create_dataset("split", data=[str(x) for x in sub["split"]], dtype=strs)
    fold = np.asarray(sub["fold"], dtype=np.int16)
    g.create_dataset("fold", data=fold)
    g.create_dataset("offset", data=offsets[keep])
    g.create_dataset("n_valid_frames", data=n_frames[keep])
    tempo = (
        np.asarray(sub["tempo_bpm"], dtype=np.float32) if "tempo_bpm" in sub
        else np.full(len(sub), np.nan, dtype=np.float32)
    )
    g.create_dataset("tempo_bpm", data=tempo)
    tag_vocab, tags = _tags_of(sub)
    g.create_dataset("tags", data=tags, dtype=np.uint8)
    g.create_dataset("frame_sum", data=sums[keep])
    g.create_dataset("frame_sumsq", data=sumsq[keep])

    # train-only statistics (split column = fold 0 in k-fold mode) + per fold
    st = h5.create_group("stats")
    split_arr = np.array([str(x) for x in sub["split"]])
    m, s = _stats_from_sums(sums[keep], sumsq[keep], n_frames[keep], split_arr == "train")
    st.create_dataset("mean", data=m)
    st.create_dataset("std", data=s)
    n_folds = int(fold.max()) + 1 if (fold >= 0).any() else 0
    for f in range(n_folds):
        tr = _fold_mask(fold, f, n_folds, "train")
        fm, fs = _stats_from_sums(sums[keep], sumsq[keep], n_frames[keep], tr)
        st.create_dataset(f"fold_{f}/mean", data=fm)
        st.create_dataset(f"fold_{f}/std", data=fs)

    h = hashlib.sha256(json.dumps(fe, sort_keys=True).encode())
    for tid, d in zip((str(x) for x in sub["track_id"]), (digests[i] for i in keep)):
        h.update(tid.encode() + b"\0" + d)
    content_hash = h.hexdigest()
    versions = library_versions("mgr", "numpy", "librosa", "soundfile", "soxr", "h5py", "scipy")
    a = h5.attrs
    a["format_version"] = FORMAT_VERSION
    a["layout"] = "frames_major_contiguous" if compression == "none" else "frames_major_chunked"
    a["compression"] = compression
    a["frontend"] = json.dumps(fe, sort_keys=True)
    for k, v in fe.items():
        a[f"fe_{k}"] = "null" if v is None else v
    a["audio"] = json.dumps(audio_d, sort_keys=True)
    a["labels"] = json.dumps(labels)
    a["tag_vocab"] = json.dumps(tag_vocab)
    a["versions"] = json.dumps(versions, sort_keys=True)
    a["content_hash"] = content_hash
    a["n_tracks"] = int(len(sub))
    a["n_folds"] = n_folds
    a["total_frames"] = total
    return content_hash


def _fold_mask(fold: np.ndarray, f: int, k: int, split: str) -> np.ndarray:
    """Tracks of ``split`` in fold ``f``'s assignment (the one rule, :func:`mgr.data.split.fold_parts`)."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r} (allowed: train, val, test)")
    return fold_parts(fold, f, k) == split


def _stats_from_sums(sums: np.ndarray, sumsq: np.ndarray, n_frames: np.ndarray, mask: np.ndarray):
    n = float(n_frames[mask].sum())
    if n <= 0:
        raise DataError("spectrogram: no train tracks to compute normalisation statistics from")
    mean = sums[mask].sum(axis=0) / n
    var = np.maximum(sumsq[mask].sum(axis=0) / n - mean * mean, 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), STATS_EPS).astype(np.float32)


# ------------------------------------------------------------------------------------- reader
class SpectrogramStore:
    """Read-only view of ``data/spectrograms.h5`` (see the module docstring for the layout).

    Per-track metadata is loaded into memory on open; spectrogram data are memory-mapped when
    the file is uncompressed (views, no copies) and read through h5py otherwise. Usable as a
    context manager; :meth:`close` releases the file.
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path} not found (run the spectrogram stage first)")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise DataError(f"{self.path}: not a readable HDF5 file ({e})") from None
        h5 = self._h5
        try:
            a = h5.attrs
            if int(a["format_version"]) != FORMAT_VERSION:
                raise DataError(f"{self.path}: format_version {a['format_version']} (expected {FORMAT_VERSION})")
            self.frontend: dict = json.loads(a["frontend"])
            self.audio: dict = json.loads(a["audio"])
            self.labels: list[str] = json.loads(a["labels"])
            self.tag_vocab: list[str] = json.loads(a["tag_vocab"])
            self.versions: dict = json.loads(a["versions"])
            self.content_hash: str = str(a["content_hash"])
            g = h5["tracks"]
            self.track_ids = np.array(g["track_id"].asstr()[...], dtype=object)
            self.paths = np.array(g["path"].asstr()[...], dtype=object)
            self.genre_idx = g["genre_idx"][...]
            self.split = np.array(g["split"].asstr()[...], dtype=object)
            self.fold = g["fold"][...].astype(np.int64)
            self.offset = g["offset"][...]
            self.n_valid_frames = g["n_valid_frames"][...]
            self.tempo_bpm = g["tempo_bpm"][...]
            self.tags = g["tags"][...]
            self._sums = g["frame_sum"][...]
            self._sumsq = g["frame_sumsq"][...]
            ds = h5["spec"]
        except KeyError as e:
            raise DataError(f"{self.path}: incomplete spectrogram store (missing {e})") from None
        self.n_mels = int(ds.shape[1])
        self.n_folds = int(a.get("n_folds", 0))
        self._ds = ds
        self._spec: Any = ds
        self.memmapped = False
        off = ds.id.get_offset() if ds.chunks is None and ds.compression is None and not ds.is_virtual else None
        if ds.is_virtual:  # a sharded store (mgr.distributed.shards): each shard memory-mapped

            self._spec = ShardRows(self.path, ds)
            self.memmapped = self._spec.memmapped
        if off is not None:
            self._spec = np.memmap(self.path, dtype=np.dtype("<f4"), mode="r", offset=off, shape=ds.shape)
            self.memmapped = True
        self.floor_db = float(self.frontend.get("floor_db", -80.0))

    # -- basics
    def __len__(self) -> int:
        return len(self.track_ids)

    def __enter__(self) -> SpectrogramStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._spec = None
        if getattr(self, "_h5", None) is not None:
            self._h5.close()
            self._h5 = None

    @property
    def n_tracks(self) -> int:
        return len(self.track_ids)

    def frames_for_seconds(self, seconds: float) -> int:
        """Frames spanned by ``seconds`` of audio at this front end's hop (at least 1)."""
        return max(1, int(round(float(seconds) * self.frontend["sr"] / self.frontend["hop"])))

    def _rows(self, start: int, stop: int) -> np.ndarray:
        return self._spec[start:stop]  # memmap view, or an h5py read

    def track(self, i: int) -> np.ndarray:
        """``(n_mels, n_valid_frames[i])`` float32; a read-only view when memory-mapped."""
        o, n = int(self.offset[i]), int(self.n_valid_frames[i])
        return self._rows(o, o + n).T

    def indices(self, split: str, fold: int | None = None) -> np.ndarray:
        """Track indices of ``split`` (``train|val|test``); of fold ``fold``'s assignment in k-fold mode."""
        if split not in ("train", "val", "test"):
            raise DataError(f"unknown split {split!r} (allowed: train, val, test)")
        if fold is None:
            return np.flatnonzero(self.split == split)
        if self.n_folds == 0:
            raise DataError(f"{self.path}: fold {fold} requested but the split has no folds")
        if not 0 <= fold < self.n_folds:
            raise DataError(f"fold {fold} out of range (0..{self.n_folds - 1})")
        return np.flatnonzero(_fold_mask(self.fold, int(fold), self.n_folds, split))

    def random_windows(
        self, indices: np.ndarray, n: int, window_frames: int, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random windows from the given tracks: ``(X[n, n_mels, window_frames], track_index[n])``.

        Tracks are drawn uniformly from ``indices`` and a start uniformly within the track, so a
        window never crosses a track boundary. Tracks shorter than the window are padded at the
        end with the front end's floor value.
        """
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise DataError("random_windows: no tracks to draw from")
        w = int(window_frames)
        tix = indices[rng.integers(0, indices.size, size=n)]
        X = np.empty((n, self.n_mels, w), dtype=np.float32)
        nv = self.n_valid_frames[tix]
        starts = (rng.random(n) * np.maximum(nv - w + 1, 1)).astype(np.int64)
        for k in range(n):
            i = tix[k]
            o = int(self.offset[i]) + int(starts[k])
            m = min(w, int(nv[k]))
            X[k, :, :m] = self._rows(o, o + m).T
            if m < w:
                X[k, :, m:] = self.floor_db
        return X, tix

    def track_windows(self, i: int, window_frames: int, overlap: float = 0.5) -> np.ndarray:
        """All windows of track ``i`` with the given overlap, covering the whole track.

        Windows start every ``round(window_frames * (1 - overlap))`` frames and the last one is
        aligned to the track's end; a track shorter than the window gives one padded window.
        """

        w = int(window_frames)
        hop = hop_for(w, None, overlap)
        spec = self.track(i)
        n = spec.shape[1]
        if n < w:
            X = np.full((1, self.n_mels, w), self.floor_db, dtype=np.float32)
            X[0, :, :n] = spec
            return X
        starts = window_starts(n, w, hop)
        X = np.empty((len(starts), self.n_mels, w), dtype=np.float32)
        for k, s in enumerate(starts):
            X[k] = spec[:, s : s + w]
        return X

    def stats(self, fold: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-mel ``(mean, std)`` over the frames of train tracks only (of ``fold`` in k-fold mode)."""
        mask = self.split == "train" if fold is None else np.isin(np.arange(len(self)), self.indices("train", fold))
        return _stats_from_sums(self._sums, self._sumsq, self.n_valid_frames, mask)

    def metadata(self) -> Any:
        """Per-track metadata as a DataFrame (for validation and reports)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "track_id": self.track_ids.astype(str),
                "genre_idx": self.genre_idx,
                "split": self.split.astype(str),
                "fold": self.fold,
                "offset": self.offset,
                "n_valid_frames": self.n_valid_frames,
                "tempo_bpm": self.tempo_bpm,
            }
        )
