"""Handcrafted feature sets with the column names of their public tables, and the table builder.

``gtzan57``
    The Kaggle GTZAN table (``features_30_sec.csv``): mean and variance over frames of
    ``chroma_stft``, ``rms``, ``spectral_centroid``, ``spectral_bandwidth``, ``rolloff``,
    ``zero_crossing_rate``, ``harmony`` / ``perceptr`` (the harmonic and percussive signals of
    librosa's HPSS, as samples), ``tempo`` (BPM), and ``mfcc1_mean`` ... ``mfcc20_var``
    (librosa defaults: n_fft 2048, hop 512). Column order is the Kaggle order; 57 features.
``fma518``
    FMA's ``features.py`` (Defferrard et al. 2017): ``zcr`` (1), ``chroma_cqt`` / ``chroma_cens``
    (12, from an 84-bin CQT, hop 512), ``tonnetz`` (6), ``chroma_stft`` (12), ``rmse`` (1),
    ``spectral_centroid`` / ``spectral_bandwidth`` / ``spectral_rolloff`` (1),
    ``spectral_contrast`` (7), ``mfcc`` (20), each x {mean, std, skew, kurtosis, median, min,
    max} = 518 columns named ``<feature>_<statistic>_<nn>`` (``mfcc_mean_01``), in FMA's sorted
    column order. FMA used the native sample rate; here the ``audio.sample_rate`` param applies.
``musicnn_msd`` / ``musicnn_mtt``
    Pretrained embeddings (Pons & Serra 2019; weights from the ``musicnn`` wheel, see
    :mod:`mgr.pretrained`): the 200-unit "penultimate" layer of the MSD- or MTT-trained musicnn
    over every 3 s patch of the track (musicnn's own 16 kHz front end, resampled from
    ``audio.sample_rate``), pooled as mean and max over patches: 400 columns
    ``musicnn_msd_mean_000`` ... ``musicnn_msd_max_199``. Run through the exported ONNX model.
``musicnn_msd_tags`` / ``musicnn_mtt_tags``
    The taggram of the same models: the 50 sigmoid tag scores (MSD: last.fm tags such as
    ``rock``, ``jazz``, ``Hip-Hop``; MTT: MagnaTagATune tags) averaged over the track's 3 s
    patches, 50 columns ``musicnn_msd_tags_00_rock`` ... in output order. Computed in the same
    forward pass as the embedding (:func:`mgr.pretrained.builtin.track_taggram`), so a table
    holding both costs one pass.

Sets combine with ``+`` (``gtzan57+musicnn_msd``): the columns of each, in that order. Models
standardise such a combination per block (:func:`mgr.models.estimators.block_layout`).

:func:`extract_features` works on one signal and has no import-time side effects (librosa and
scipy are imported on first call), so ``mgr predict`` and the classical models can call it on
single files. ``gtzan57`` is computed by :mod:`mgr.dsp.kernels` (plain NumPy, equal to the librosa
calls named above within float32 rounding, tested), so it needs neither librosa nor numba. :func:`build_feature_table` runs it over a dataset in parallel and streams the rows
into ``data/features.parquet`` (or ``.csv``) through an atomic temporary file.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import describe, load_audio
from mgr.dsp.kernels import gtzan57
from mgr.errors import DataError, ParamsError
from mgr.features.extract import run_parallel, skip_on_failure
from mgr.io import atomic_path, n_workers
from mgr.pretrained.builtin import embedding_names, ensure_builtin, tag_names, track_embedding, track_taggram

__all__ = ["FEATURE_SETS", "build_feature_table", "extract_features", "feature_names"]

from mgr.params import FEATURE_SETS, parse_feature_sets

_GTZAN_BASE = [
    "chroma_stft",
    "rms",
    "spectral_centroid",
    "spectral_bandwidth",
    "rolloff",
    "zero_crossing_rate",
    "harmony",
    "perceptr",
]
_FMA_SIZES = {
    "chroma_cens": 12,
    "chroma_cqt": 12,
    "chroma_stft": 12,
    "mfcc": 20,
    "rmse": 1,
    "spectral_bandwidth": 1,
    "spectral_centroid": 1,
    "spectral_contrast": 7,
    "spectral_rolloff": 1,
    "tonnetz": 6,
    "zcr": 1,
}
_FMA_STATS = ("kurtosis", "max", "mean", "median", "min", "skew", "std")


def feature_names(feature_set: str) -> list[str]:
    """The feature columns of ``feature_set`` (one set or several joined by ``+``) in table order."""
    if "+" in feature_set:
        return [n for fs in parse_feature_sets(feature_set) for n in feature_names(fs)]
    if feature_set in ("musicnn_msd", "musicnn_mtt"):
        return embedding_names(feature_set)
    if feature_set in ("musicnn_msd_tags", "musicnn_mtt_tags"):
        return tag_names(feature_set)
    if feature_set == "gtzan57":
        names = [f"{b}_{s}" for b in _GTZAN_BASE for s in ("mean", "var")] + ["tempo"]
        names += [f"mfcc{i}_{s}" for i in range(1, 21) for s in ("mean", "var")]
        return names
    if feature_set == "fma518":
        # FMA sorts its (feature, statistic, number) MultiIndex; flatten in that order
        return [
            f"{f}_{s}_{i:02d}" for f in sorted(_FMA_SIZES) for s in _FMA_STATS for i in range(1, _FMA_SIZES[f] + 1)
        ]
    raise ParamsError(f"params: features.set: {feature_set!r} is not allowed (allowed: {', '.join(FEATURE_SETS)})")


def feature_set_of(column: str) -> str:
    """The feature set a table column belongs to."""
    for fs in sorted(FEATURE_SETS, key=len, reverse=True):  # musicnn_msd_tags before musicnn_msd
        if fs.startswith("musicnn") and column.startswith(fs + "_"):
            return fs
    for fs in ("gtzan57", "fma518"):
        if column in _names_cached(fs):
            return fs
    raise DataError(f"features table: column {column!r} belongs to no known feature set")


_NAMES: dict[str, frozenset] = {}


def _names_cached(fs: str) -> frozenset:
    if fs not in _NAMES:
        _NAMES[fs] = frozenset(feature_names(fs))
    return _NAMES[fs]


def _musicnn(y: np.ndarray, sr: int, feature_set: str) -> dict[str, float]:
    vec = track_taggram(feature_set, y, sr) if feature_set.endswith("_tags") else track_embedding(feature_set, y, sr)
    return dict(zip(feature_names(feature_set), (float(v) for v in vec)))


def _gtzan57(y: np.ndarray, sr: int) -> dict[str, float]:
    # NumPy re-implementation of the librosa calls (equality with librosa tested in
    # tests/test_fastdsp.py): no librosa import / numba JIT, ~3x faster warm, and the same code
    # runs in the features stage and in `mgr predict`
    return gtzan57(y, sr)


def _fma518(y: np.ndarray, sr: int) -> dict[str, float]:
    import librosa
    from scipy import stats

    feats: dict[str, np.ndarray] = {}
    feats["zcr"] = librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=512, bins_per_octave=12, n_bins=7 * 12, tuning=None))
    feats["chroma_cqt"] = librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7)
    feats["chroma_cens"] = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7)
    feats["tonnetz"] = librosa.feature.tonnetz(chroma=feats["chroma_cens"])
    del cqt
    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    feats["chroma_stft"] = librosa.feature.chroma_stft(S=stft**2, n_chroma=12)
    feats["rmse"] = librosa.feature.rms(S=stft)
    feats["spectral_centroid"] = librosa.feature.spectral_centroid(S=stft)
    feats["spectral_bandwidth"] = librosa.feature.spectral_bandwidth(S=stft)
    feats["spectral_contrast"] = librosa.feature.spectral_contrast(S=stft, n_bands=6)
    feats["spectral_rolloff"] = librosa.feature.spectral_rolloff(S=stft)
    mel = librosa.feature.melspectrogram(sr=sr, S=stft**2)
    feats["mfcc"] = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
    out: dict[str, float] = {}
    for name, x in feats.items():
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # near-constant rows (silence, pure tones)
            st = {
                "mean": np.mean(x, axis=1),
                "std": np.std(x, axis=1),
                "skew": stats.skew(x, axis=1),
                "kurtosis": stats.kurtosis(x, axis=1),
                "median": np.median(x, axis=1),
                "min": np.min(x, axis=1),
                "max": np.max(x, axis=1),
            }
        for s, v in st.items():
            # a constant row (e.g. silence) has undefined skew/kurtosis: 0, as for a symmetric flat shape
            v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
            for i, val in enumerate(v):
                out[f"{name}_{s}_{i + 1:02d}"] = float(val)
    return out


def extract_features(y: np.ndarray, sr: int, feature_set: str = "gtzan57") -> dict[str, float]:
    """The features of one mono signal as ``{column: value}`` in table order.

    Parameters
    ----------
    y : mono float signal (e.g. from :func:`mgr.audio.decode.load_audio`).
    sr : its sample rate.
    feature_set : a name from ``FEATURE_SETS`` or several joined by ``+`` (module docstring).
    """
    names = feature_names(feature_set)
    if "+" in feature_set:
        out: dict[str, float] = {}
        for fs in parse_feature_sets(feature_set):
            out.update(extract_features(y, sr, fs))
        return out
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"extract_features expects a mono 1-D signal, got shape {y.shape}")
    if y.size < 2048:
        y = np.pad(y, (0, 2048 - y.size))
    with warnings.catch_warnings():
        # silent or pitchless input: librosa warns and falls back to tuning 0, which is what we want
        warnings.filterwarnings("ignore", message="Trying to estimate tuning", category=UserWarning)
        if feature_set == "gtzan57":
            feats = _gtzan57(y, int(sr))
        elif feature_set == "fma518":
            feats = _fma518(y, int(sr))
        else:
            feats = _musicnn(y, int(sr), feature_set)
    return {k: feats[k] for k in names}


# ----------------------------------------------------------------------------------- the table
def _feat_job(args: tuple) -> tuple:
    i, path, audio_d, feature_set = args

    def work() -> dict[str, float]:
        y = load_audio(path, sr=audio_d["sample_rate"], offset_s=audio_d["offset_s"],
                       duration_s=audio_d["duration_s"], pad=audio_d["pad"])
        return extract_features(y, audio_d["sample_rate"], feature_set)

    i, feats, reason = skip_on_failure(i, path, work)
    if feats is None:
        return i, None, reason
    vals = np.fromiter(feats.values(), dtype=np.float64, count=len(feats))
    if not np.all(np.isfinite(vals)):
        bad = [k for k, v in feats.items() if not np.isfinite(v)][:3]
        return i, None, f"audio: {path}: non-finite features {bad}"
    return i, vals, None


def build_feature_table(
    tracks: Any,
    audio_params: Any,
    feature_set: str,
    out_path: str | os.PathLike,
    *,
    workers: int = 0,
    progress: bool = True,
    batch_rows: int = 256,
) -> dict:
    """Extract ``feature_set`` for every track in parallel and write the table atomically.

    ``tracks`` is the DataFrame from :func:`mgr.features.extract.load_inputs`. Rows are written in
    ``track_id`` order (a small reorder buffer; at most ``2 * workers`` clips in flight) in
    batches of ``batch_rows`` to a temporary Parquet (or CSV, by ``out_path``'s suffix) file
    renamed when complete. Columns: ``track_id, split, genre`` (+ ``fold`` in k-fold mode),
    then the float64 feature columns. Returns a report (``n_tracks``, ``n_skipped``, ``skipped``,
    ``seconds``, ``n_features``).
    """
    import pandas as pd


    t0 = time.perf_counter()
    names = feature_names(feature_set)
    audio_d = describe(audio_params)
    workers = n_workers(workers)
    df = tracks.reset_index(drop=True)
    if len(df) == 0:
        raise DataError("features: no tracks to process (empty intersection of tracks.csv and split.csv)")
    kfold = "fold" in df.columns and (df["fold"] >= 0).any()
    id_cols = ["track_id", "split", "genre"] + (["fold"] if kfold else [])
    out_path = Path(out_path)
    fmt = "csv" if out_path.suffix.lower() == ".csv" else "parquet"
    skipped: list[dict] = []
    n_written = 0
    buffer: dict[int, np.ndarray | None] = {}
    next_i = 0
    batch_ids: list[int] = []
    batch_vals: list[np.ndarray] = []

    with atomic_path(out_path) as tmp:
        writer: Any = None
        schema: Any = None

        def flush() -> None:
            nonlocal writer, schema, n_written
            if not batch_ids:
                return
            part = df.loc[batch_ids, id_cols].reset_index(drop=True)
            part["track_id"] = part["track_id"].astype(str)
            part["split"] = part["split"].astype(str)
            part["genre"] = part["genre"].astype(str)
            if kfold:
                part["fold"] = part["fold"].astype("int64")
            vals = pd.DataFrame(np.vstack(batch_vals), columns=names)
            table = pd.concat([part, vals], axis=1)
            if fmt == "csv":
                table.to_csv(tmp, mode="a" if writer else "w", header=writer is None, index=False,
                             float_format="%.9g")
                writer = True
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                t = pa.Table.from_pandas(table, preserve_index=False)
                if writer is None:
                    schema = t.schema.remove_metadata()
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                writer.write_table(t.cast(schema))
            n_written += len(batch_ids)
            batch_ids.clear()
            batch_vals.clear()

        def on_result(res: tuple) -> None:
            nonlocal next_i
            i, vals, reason = res
            if vals is None:
                skipped.append({"track_id": str(df.at[i, "track_id"]), "path": str(df.at[i, "path"]),
                                "reason": reason})
            buffer[i] = vals
            while next_i in buffer:  # emit in input order
                v = buffer.pop(next_i)
                if v is not None:
                    batch_ids.append(next_i)
                    batch_vals.append(v)
                next_i += 1
            if len(batch_ids) >= batch_rows:
                flush()

        for fs in parse_feature_sets(feature_set):
            if fs.startswith("musicnn"):  # build the exported backbone once, before the workers fork
                ensure_builtin(fs.removesuffix("_tags"))
        if workers > 1 and "fma518" in parse_feature_sets(feature_set):  # the others need no librosa
            # import librosa and JIT-compile its numba kernels once in the parent: the forked
            # workers inherit them instead of each compiling its own copy
            extract_features(np.zeros(audio_d["sample_rate"], dtype=np.float32), audio_d["sample_rate"], feature_set)
        jobs = ((i, str(df.at[i, "path"]), audio_d, feature_set) for i in range(len(df)))
        try:
            run_parallel(_feat_job, jobs, len(df), workers, on_result, f"features {feature_set}", progress)
            flush()
        finally:
            if writer not in (None, True):
                writer.close()
        if n_written == 0:
            raise DataError(f"features: no track could be decoded ({len(skipped)} skipped)")
    skipped.sort(key=lambda r: r["track_id"])
    return {
        "n_tracks": n_written,
        "n_skipped": len(skipped),
        "skipped": skipped,
        "n_features": len(names),
        "feature_set": feature_set,
        "format": fmt,
        "seconds": round(time.perf_counter() - t0, 3),
        "workers": workers,
    }


def read_feature_table(path: str | os.PathLike) -> Any:
    """Read ``data/features.parquet`` (or ``.csv``) as a DataFrame (``track_id`` as str)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found (run the features stage first)")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"track_id": str, "split": str, "genre": str})
    df = pd.read_parquet(path)
    df["track_id"] = df["track_id"].astype(str)
    return df
