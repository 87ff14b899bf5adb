"""Scoring: every trained model evaluated the same way on the same test tracks.

The evaluate protocol (:func:`run_evaluate`)
--------------------------------------------
* Every model of ``ml.models`` + ``dl.models`` with an artifact is scored on the **test tracks
  of split.csv** (val and train are never used); a listed model without an artifact is named
  in the leaderboard and the log, not ranked.
* **Windows.** A deep model can only score windows of its input length (the card's
  ``window_frames``), so that is what it is fed. ``evaluate.window_s`` / ``evaluate.overlap``
  set the *segments* that form the window level and the units that are aggregated per track,
  the same for every model: a segment longer than the model's input is tiled by model windows
  (same overlap, last one end-aligned) whose probabilities are averaged; a segment not longer
  than the model's input is the model window itself (the protocol block of the metrics says
  which length was used). With the defaults (3 s, 50 %; ``train.window_s`` 3 s) segment =
  model window. Track level = mean of segment probabilities, or majority vote over segments
  (``evaluate.aggregate`` picks the headline; both are reported). Classical models have one
  feature row per track: no window level.
* **Skipped tracks**: test tracks with no feature row / not in the spectrogram store (decoding
  failed) are counted in ``n_skipped`` and listed with their reason; ``n_tracks`` is the number
  of test tracks in split.csv.
* **k-fold** (split.csv has ``fold``): each fold's test part is scored; ``track`` in the metrics
  is the mean over folds (``track_std`` the std), ``per_fold`` the detail. A model directory
  with ``fold_<f>/`` sub-artifacts is scored per fold. Otherwise the single artifact is scored on
  the fold it was trained on (deep: the card's ``fold``; classical: fold 0), and for classical
  models the remaining folds are taken from ``metrics/train-ml/<name>.json`` (``per_fold.<f>.test``:
  train-ml fits one model per fold and scores its test part with these same functions); each
  fold's ``source`` says where it came from. train-dl writes ``fold_<f>/`` artifacts for every
  fold (unless ``train.all_folds`` is false), so deep models report every fold too; ``n_folds``
  says how many folds a row averages.
* **Tempo**: the model's track-level tempo is the read-out (:func:`mgr.models.deep.bpm_from_probs`)
  of the mean tempo-class probabilities; the DSP baseline is ``librosa.feature.tempo`` on the same
  test tracks' audio, decoded with the pipeline's ``audio`` params.
* **Calibration** (track level, on the mean probabilities; classical: the row's): top-label
  expected calibration error over 15 equal-width confidence bins (:func:`expected_calibration_error`)
  and the multiclass Brier score (:func:`brier_score`), ``track.ece`` / ``track.brier``.
* **Per-track predictions**: ``reports/predictions/<model>.csv`` (``track_id, fold, true,
  predicted, p_<label>...``; git-tracked) so that two commits can be compared track by track
  (:mod:`mgr.evaluation.compare`, ``mgr compare``).
* Deterministic: floats are rounded to 6 decimals and nothing time-dependent is written, so
  ``dvc repro --force -s evaluate`` rewrites identical files.
* Paths arrive from the stage (:class:`EvaluatePaths`, filled from ``dvc.yaml``'s ``cmd``); the
  outputs are written by :mod:`mgr.evaluation.report`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import load_audio
from mgr.audio.windows import hop_for, window_starts
from mgr.data.split import fold_split
from mgr.data.tracks import load_tracks
from mgr.dsp import kernels
from mgr.errors import ArtifactError, DataError
from mgr.evaluation import report
from mgr.evaluation.calibration import brier_score, expected_calibration_error
from mgr.evaluation.metrics import (
    accuracy,
    aggregate_tracks,
    classification_metrics,
    confusion_matrix,
    mean_std,
    tag_f1_at_threshold,
    tag_metrics,
    tempo_metrics,
)
from mgr.evaluation.report import ROUND, prediction_rows
from mgr.features.store import SpectrogramStore
from mgr.io import n_workers, process_pool
from mgr.models import classical, classical_artifact, deep
from mgr.models.deep import bpm_from_probs, bpm_to_class
from mgr.params import classical_models

HEADLINE_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "top3")
# track-level calibration of the mean probabilities (classical: the row's probabilities)
CALIBRATION_KEYS = ("ece", "brier", "ece_uncalibrated", "brier_uncalibrated")


@dataclass(frozen=True)
class EvaluatePaths:
    """Where evaluate reads and writes (given by the stage, from ``dvc.yaml``'s ``cmd``)."""

    split: Path  # split.csv
    tracks_dir: Path  # the dataset directory holding tracks.csv (reference tempo, audio paths)
    features: Path  # the feature table (classical models)
    models: Path  # models/<name>/...
    train_metrics: Path  # metrics/train-ml/<name>.json (classical folds without their own artifact)
    stores: tuple[Path, ...]  # spectrogram stores, one per front end
    metrics: Path  # metrics/<model>.json, summary.json, tempo_baseline.json
    reports: Path  # leaderboard.md, confusion/, predictions/, figures/


def _r(x: Any) -> Any:
    """Round floats (recursively) for stable, readable metrics files; NaN -> None."""
    if isinstance(x, dict):
        return {str(k): _r(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v) for v in x]
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return None if not np.isfinite(f) else round(f, ROUND)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in HEADLINE_KEYS + CALIBRATION_KEYS if k in m}


def split_test_ids(split: Any, fold: int | None) -> list[str]:
    """Test track ids of ``split.csv`` (of fold ``fold``'s assignment in k-fold mode), sorted."""
    part = split if fold is None else fold_split(split, fold)
    return sorted(part.loc[part["split"] == "test", "track_id"].astype(str))


def split_folds(split: Any) -> list[int | None]:
    """``[0..k-1]`` in k-fold mode (a ``fold`` column with >= 2 folds), else ``[None]``."""
    if "fold" in split.columns:
        f = split["fold"]
        if f.notna().all() and (f >= 0).all() and f.nunique() >= 2:
            return list(range(int(f.max()) + 1))
    return [None]


def find_artifacts(models_dir: str | Any, name: str, folds: list[int | None]) -> dict[int | None, Any]:
    """The artifact directories of model ``name``, keyed by the fold whose test part they may score.

    * ``models/<name>/fold_<f>/model.json`` for every fold that has one (one model per fold);
    * else ``models/<name>/model.json``: in k-fold mode it belongs to the fold named by its
      card's ``fold`` (deep models) or fold 0 (classical: train-ml saves fold 0's model);
      without folds it scores the ``test`` part of the split.
    Empty when the model has no artifact.
    """
    base = Path(models_dir) / name
    if folds != [None]:
        per = {f: base / f"fold_{f}" for f in folds if (base / f"fold_{f}" / "model.json").is_file()}
        if per:
            return per
    card_path = base / "model.json"
    if not card_path.is_file():
        return {}
    if folds == [None]:
        return {None: base}
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        card = {}
    f = card.get("fold") if isinstance(card, dict) else None
    f = int(f) if isinstance(f, int) and f in folds else 0
    return {f: base}


def _label_map(model_labels: Sequence[str], data_labels: Sequence[str], name: str) -> np.ndarray:
    """Index map data label -> model label; an unknown data label is an ArtifactError."""
    pos = {lab: i for i, lab in enumerate(model_labels)}
    missing = [lab for lab in data_labels if lab not in pos]
    if missing:
        raise ArtifactError(
            f"model {name}: its labels {list(model_labels)} lack {missing} found in the data "
            "(the artifact was trained on another dataset; retrain it)"
        )
    return np.array([pos[lab] for lab in data_labels], dtype=np.int64)


def _track_result(
    track_ids: Sequence[str], y: np.ndarray, scores: np.ndarray, pred: np.ndarray, labels: Sequence[str],
    probs: np.ndarray | None = None, raw: np.ndarray | None = None,
) -> dict[str, Any]:
    """Track-level metrics; ``probs`` (the mean probabilities; default ``scores``) give the
    calibration (``ece``, ``brier``), ``raw`` (the same before the card's temperature) the
    calibration before it (``ece_uncalibrated``, ``brier_uncalibrated``)."""
    m = classification_metrics(y, scores, list(labels), k=3, y_pred=pred)
    m.pop("confusion")
    pr = scores if probs is None else probs
    m["ece"] = expected_calibration_error(y, pr)
    m["brier"] = brier_score(y, pr)
    if raw is not None:
        m["ece_uncalibrated"] = expected_calibration_error(y, raw)
        m["brier_uncalibrated"] = brier_score(y, raw)
    return m


def evaluate_classical(art: Any, table: Any, test_ids: Sequence[str]) -> dict[str, Any]:
    """Score a classical artifact on the test tracks' feature rows.

    Test tracks without a feature row (failed extraction) or with non-finite features are
    skipped and listed with their reason. Features are per track, so there is no window level.
    Returns ``{"n_tracks", "n_skipped", "skipped", "track", "predictions"}``.
    """
    labels = list(art.labels)
    rows = table[table["track_id"].astype(str).isin(set(test_ids))]
    have = set(rows["track_id"].astype(str))
    skipped = {t: "no feature row (feature extraction failed or the track was rejected)" for t in test_ids if t not in have}
    X = art.matrix(rows)  # checks the feature columns against the card
    finite = np.isfinite(X).all(axis=1)
    for t in rows.loc[~finite, "track_id"].astype(str):
        skipped[t] = "non-finite feature values"
    rows, X = rows[finite], X[finite]
    pos = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted(set(rows["genre"].astype(str)) - set(pos))
    if unknown:
        raise ArtifactError(
            f"model {art.name}: test genres {unknown} are not among its labels {labels} "
            "(the artifact was trained on another dataset; retrain it)"
        )
    y = np.array([pos[g] for g in rows["genre"].astype(str)], dtype=np.int64)
    tids = rows["track_id"].astype(str).to_numpy()
    raw = art.predict_proba(X, calibrated=False) if len(X) else np.zeros((0, len(labels)))
    probs = art.calibrate(raw) if len(X) else raw
    tracks, scores, pred = aggregate_tracks(probs, tids, "mean")
    _, raw_scores, _ = aggregate_tracks(raw, tids, "mean")
    first = dict(zip(tids, y))
    y_t = np.array([first[t] for t in tracks], dtype=np.int64)
    track = _track_result(tracks, y_t, scores, pred, labels, raw=raw_scores)
    return {
        "n_tracks": len(test_ids),
        "n_skipped": len(skipped),
        "skipped": dict(sorted(skipped.items())),
        "track": track,
        "track_mean": _headline(track),
        "predictions": list(zip(tracks.tolist(), [labels[i] for i in y_t], [labels[i] for i in pred])),
        "confusion": confusion_matrix(y_t, pred, len(labels)),
        "labels": labels,
        "_probs": scores,
    }


def _segment_windows(store: Any, i: int, seg_frames: int, model_frames: int, overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Model-input windows of track ``i`` and the segment each belongs to.

    Segments (the window-level unit) are ``seg_frames`` long with ``overlap`` and cover the whole
    track (:meth:`SpectrogramStore.track_windows`). When a segment is longer than the model's
    input, it is tiled by model windows with the same overlap (last one end-aligned) and the
    segment's probabilities are the mean over them; when it is not longer, segment = model window.
    """
    if seg_frames <= model_frames:
        X = store.track_windows(i, model_frames, overlap)
        return X, np.arange(len(X))
    segs = store.track_windows(i, seg_frames, overlap)
    starts = window_starts(seg_frames, model_frames, hop_for(model_frames, None, overlap))
    X = np.stack([s[:, a : a + model_frames] for s in segs for a in starts])
    return X, np.repeat(np.arange(len(segs)), len(starts))


def _same_frontend(a: dict, b: dict) -> list[str]:
    norm = lambda d: {k: json.loads(json.dumps(v)) for k, v in d.items()}  # noqa: E731
    a, b = norm(a), norm(b)
    return sorted(k for k in set(a) & set(b) if a[k] != b[k])


def evaluate_deep(
    art: Any,
    store: Any,
    test_ids: Sequence[str],
    *,
    window_s: float,
    overlap: float,
    tag_threshold: float = 0.5,
    batch_windows: int = 1024,
) -> dict[str, Any]:
    """Score a deep artifact on the test tracks of the spectrogram store.

    Window level: segments of ``window_s`` seconds (``overlap``), each scored by the model on
    windows of its own input length (the card's ``window_frames``; see :func:`_segment_windows`).
    Track level: mean of the segment probabilities, and majority vote over segments (tie rule
    in :func:`vote`). Tempo (tempo head + reference BPM) and tags (tags head + tag truth) use the
    mean over segments. Test tracks missing from the store are skipped and listed.
    """
    diff = _same_frontend(dict(art.frontend), dict(store.frontend))
    if diff:
        raise ArtifactError(
            f"model {art.name}: trained on another spectrogram front end (differs in {diff}); retrain it"
        )
    labels = list(art.labels)
    lmap = _label_map(labels, list(store.labels), art.name)
    index = {str(t): j for j, t in enumerate(store.track_ids)}
    skipped = {t: "not in the spectrogram store (decoding failed or the track was rejected)" for t in test_ids if t not in index}
    idx = [index[t] for t in test_ids if t in index]
    W = int(art.window_frames)
    seg = max(store.frames_for_seconds(window_s), 1)
    segment_frames = max(seg, W)

    seg_probs: list[np.ndarray] = []  # per track: (n_segments, n_classes)
    seg_raw: list[np.ndarray] = []  # the same before the card's temperature
    seg_tempo: list[np.ndarray] = []
    seg_tags: list[np.ndarray] = []
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        X = np.concatenate([p[0] for p in pending])
        out = art.predict_windows(X, calibrated=False)
        out["genre_raw"] = out["genre"]
        out["genre"] = art.calibrate(out["genre"])
        start = 0
        for Xi, segi in pending:
            n = len(Xi)
            nseg = int(segi.max()) + 1
            for key, dest in (("genre", seg_probs), ("genre_raw", seg_raw), ("tempo", seg_tempo), ("tags", seg_tags)):
                if key not in out:
                    continue
                o = np.asarray(out[key][start : start + n], dtype=np.float64)
                s = np.zeros((nseg, o.shape[1]))
                np.add.at(s, segi, o)
                dest.append(s / np.bincount(segi, minlength=nseg)[:, None])
            start += n
        pending.clear()

    n_pending = 0
    for i in idx:
        X, segi = _segment_windows(store, i, segment_frames, W, overlap)
        pending.append((X, segi))
        n_pending += len(X)
        if n_pending >= batch_windows:
            flush()
            n_pending = 0
    flush()

    y = lmap[np.asarray(store.genre_idx)[idx]] if idx else np.zeros(0, np.int64)
    tids = [str(store.track_ids[i]) for i in idx]
    # window (segment) level
    if idx:
        wprobs = np.concatenate(seg_probs)
        wtrack = np.repeat(np.arange(len(idx)), [len(s) for s in seg_probs])
    else:
        wprobs, wtrack = np.zeros((0, len(labels))), np.zeros(0, np.int64)
    window = _headline(classification_metrics(y[wtrack], wprobs, labels, k=3))
    window["n_windows"] = int(len(wprobs))
    _, mscores, mpred = aggregate_tracks(wprobs, wtrack, "mean")
    _, vscores, vpred = aggregate_tracks(wprobs, wtrack, "vote")
    raw = np.concatenate(seg_raw) if idx else np.zeros((0, len(labels)))
    _, rscores, _ = aggregate_tracks(raw, wtrack, "mean")
    track_mean = _track_result(tids, y, mscores, mpred, labels, raw=rscores)
    # calibration is a property of probabilities: the vote rule reports the mean's
    track_vote = _track_result(tids, y, vscores, vpred, labels, probs=mscores, raw=rscores)
    res: dict[str, Any] = {
        "n_tracks": len(test_ids),
        "n_skipped": len(skipped),
        "skipped": dict(sorted(skipped.items())),
        "window": window,
        "track_mean": track_mean,
        "track_vote": track_vote,
        "protocol": {
            "segment_s": round(segment_frames * store.frontend["hop"] / store.frontend["sr"], 4),
            "segment_frames": int(segment_frames),
            "model_window_frames": W,
            "overlap": float(overlap),
        },
        "labels": labels,
        "_scores": {"mean": (mpred, y), "vote": (vpred, y)},
        "_tids": tids,
        "_probs": mscores,
    }
    # tempo
    ref = np.asarray(store.tempo_bpm, dtype=float)[idx] if idx else np.zeros(0)
    if seg_tempo and np.isfinite(ref).any():
        tprob = np.stack([s.mean(axis=0) for s in seg_tempo])
        bins = art.card.get("tempo_bins") or {}
        est = bpm_from_probs(tprob, bins.get("centres", art.tempo_centres), log=bins.get("kind") == "log")
        tm = tempo_metrics(est, ref)
        if bins.get("edges"):
            ok = np.isfinite(ref)
            cls = bpm_to_class(ref[ok], bins["edges"])
            tm["class_accuracy"] = accuracy(cls, tprob[ok].argmax(axis=1)) if ok.any() else float("nan")
        res["tempo"] = tm
        res["_tempo_ref"] = dict(zip(tids, ref.tolist()))
        res["_tempo_est"] = dict(zip(tids, np.asarray(est, float).tolist()))  # mgr.tempo.protocol.side_by_side
    # tags
    if seg_tags and len(store.tag_vocab):
        vocab = list(art.tag_vocab) or list(store.tag_vocab)
        spos = {t: j for j, t in enumerate(store.tag_vocab)}
        common = [j for j, t in enumerate(vocab) if t in spos]
        tscore = np.stack([s.mean(axis=0) for s in seg_tags])[:, common]
        truth = np.asarray(store.tags)[idx][:, [spos[vocab[j]] for j in common]]
        tg = tag_metrics(truth, tscore, [vocab[j] for j in common])
        tg["f1_at_threshold"] = tag_f1_at_threshold(truth, tscore, tag_threshold, tg["tags_skipped"], [vocab[j] for j in common])
        tg["threshold"] = float(tag_threshold)
        res["tags"] = tg
    return res


def _tempo_job(args: tuple) -> tuple[str, float, str | None]:
    track_id, path, audio = args
    try:
        y = load_audio(path, sr=audio["sample_rate"], offset_s=audio["offset_s"], duration_s=audio["duration_s"], pad=audio["pad"])
        # = librosa.feature.tempo(y=y, sr=sr)[0] (tested equal), without librosa's numba kernels:
        # workers compiling those concurrently can corrupt numba's on-disk cache (numba #10128)
        bpm = kernels.tempo(y, audio["sample_rate"])
        return track_id, bpm, None
    except Exception as e:  # a broken file is counted, never a crash of the stage
        return track_id, float("nan"), f"{type(e).__name__}: {e}"


def tempo_baseline(tracks: Any, track_ids: Sequence[str], audio: dict, workers: int = 0) -> dict[str, Any]:
    """DSP tempo baseline: ``librosa.feature.tempo`` (default settings; computed by its NumPy
    twin :func:`mgr.dsp.kernels.tempo`) on the tracks' audio, decoded with the pipeline's audio policy. Tracks without a reference tempo are not run.

    Returns ``{"estimates": {track_id: bpm or NaN}, "failed": {track_id: reason}, "metrics": ...}``.
    """
    t = tracks.set_index(tracks["track_id"].astype(str))
    ids = [i for i in track_ids if i in t.index and np.isfinite(t.at[i, "tempo_bpm"])]
    jobs = [(i, str(t.at[i, "path"]), audio) for i in ids]
    n = min(n_workers(workers), max(1, len(jobs)))
    if n > 1 and len(jobs) > 8:
        with process_pool(n) as ex:  # workers die with this process
            out = list(ex.map(_tempo_job, jobs, chunksize=4))
    else:
        out = [_tempo_job(j) for j in jobs]
    est = {i: b for i, b, _ in out}
    failed = {i: r for i, _, r in out if r}
    ref = np.array([t.at[i, "tempo_bpm"] for i in ids], dtype=float)
    m = tempo_metrics(np.array([est[i] for i in ids], dtype=float), ref)
    return {"estimates": est, "failed": failed, "metrics": m}


def _fold_record(res: dict[str, Any], how: str) -> dict[str, Any]:
    """The JSON record of one evaluated fold (no private keys)."""
    rec: dict[str, Any] = {"source": "evaluate", "n_tracks": res["n_tracks"], "n_skipped": res["n_skipped"]}
    if res["skipped"]:
        rec["skipped"] = [{"track_id": t, "reason": r} for t, r in res["skipped"].items()]
    if "window" in res:  # deep
        rule = res["track_vote"] if how == "vote" else res["track_mean"]
        rec["track"] = rule
        rec["track_mean"] = _headline(res["track_mean"])
        rec["track_vote"] = _headline(res["track_vote"])
        rec["window"] = res["window"]
        rec["protocol"] = res["protocol"]
    else:  # classical: one feature row per track, mean == vote == the row's probabilities
        rec["track"] = res["track"]
    for key in ("tempo", "tempo_baseline", "tags"):
        if key in res:
            rec[key] = res[key]
    return rec


def _combine_folds(recs: dict[int | None, dict[str, Any]]) -> dict[str, Any]:
    """Per-model metrics: the fold itself (holdout) or mean/std over folds plus per-fold detail."""
    if list(recs) == [None]:
        return dict(recs[None])
    out: dict[str, Any] = {"folds": sorted(recs), "n_folds": len(recs)}
    out["n_tracks"] = sum(r["n_tracks"] for r in recs.values())
    out["n_skipped"] = sum(r["n_skipped"] for r in recs.values())
    stats = {k: mean_std([r["track"].get(k) for r in recs.values()]) for k in HEADLINE_KEYS + CALIBRATION_KEYS
             if any(k in r["track"] for r in recs.values())}
    out["track"] = {k: s["mean"] for k, s in stats.items()}
    out["track_std"] = {k: s["std"] for k, s in stats.items()}
    for sub in ("window", "track_mean", "track_vote"):
        have = [r[sub] for r in recs.values() if sub in r]
        if have:
            out[sub] = {k: mean_std([h.get(k) for h in have])["mean"] for k in HEADLINE_KEYS}
    for key, fields in (("tempo", ("acc1", "acc2", "mae_bpm")), ("tempo_baseline", ("acc1", "acc2", "mae_bpm")),
                        ("tags", ("roc_auc", "pr_auc"))):
        have = [r[key] for r in recs.values() if key in r]
        if have:
            out[key] = {f: mean_std([h.get(f) for h in have])["mean"] for f in fields}
            out[key]["n"] = sum(int(h.get("n", 0)) for h in have)
    out["per_fold"] = {str(f): r for f, r in sorted(recs.items())}
    return out


def summary_entry(m: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one model for ``metrics/summary.json``."""
    t = m["track"]
    e: dict[str, Any] = {
        "accuracy": t.get("accuracy"),
        "balanced_accuracy": t.get("balanced_accuracy"),
        "macro_f1": t.get("macro_f1"),
        "top3": t.get("top3"),
        "ece": t.get("ece"),
        "brier": t.get("brier"),
        "ece_uncalibrated": t.get("ece_uncalibrated"),
        "n_tracks": m["n_tracks"],
        "n_skipped": m["n_skipped"],
    }
    if "track_std" in m:
        e["accuracy_std"] = m["track_std"].get("accuracy")
        e["n_folds"] = m["n_folds"]
    if "tempo" in m:
        e["tempo_acc1"] = m["tempo"].get("acc1")
        e["tempo_acc2"] = m["tempo"].get("acc2")
    if "tags" in m:
        e["tags_roc_auc"] = m["tags"].get("roc_auc")
        e["tags_pr_auc"] = m["tags"].get("pr_auc")
    return e


def run_evaluate(p: Any, paths: EvaluatePaths, *, log: Any = print, tempo_hook: Any = None) -> dict[str, Any]:
    """Score every model of ``ml.models`` (+ embedding models) and ``dl.models`` that has an
    artifact on the test split and write the metrics and reports (:mod:`mgr.evaluation.report`):
    ``<metrics>/<model>.json``, ``<metrics>/summary.json``, ``<metrics>/tempo_baseline.json``, and
    under ``<reports>``: ``leaderboard.md``, ``confusion/<model>.csv``, ``predictions/<model>.csv``,
    ``figures/confusion_<model>.png``. Returns the summary.

    Each deep model is scored on the spectrogram store (``paths.stores``) whose front end equals
    its card's (one store per front end). ``tempo_hook(paths, p, tracks, test_ids, baseline,
    tempo_heads, log=)`` (the stage passes :func:`mgr.tempo.protocol.side_by_side`) reports every
    tempo estimator side by side on the same test tracks.
    """
    import pandas as pd

    ep = p.evaluate
    split_path = paths.split
    if not split_path.is_file():
        raise DataError(f"{split_path} not found (run the split stage first: dvc repro split)")
    split = pd.read_csv(split_path, dtype={"track_id": str})
    folds = split_folds(split)
    test_ids = {f: split_test_ids(split, f) for f in folds}
    models_dir = paths.models
    names = [("classical", n) for n in classical_models(p)] + [("deep", n) for n in p.dl.models]
    found = {n: find_artifacts(models_dir, n, folds) for _, n in names}
    missing = [n for _, n in names if not found[n]]
    for n in missing:
        log(f"evaluate: {n}: no artifact in {models_dir / n} (not trained) - skipped")

    # the reference tempo and the DSP baseline (model independent, once per fold)
    tracks = None
    if (paths.tracks_dir / "tracks.csv").is_file():
        tracks = load_tracks(paths.tracks_dir)
    baseline: dict[int | None, dict[str, Any]] = {}
    if ep.tempo_baseline and tracks is not None and "tempo_bpm" in tracks and tracks["tempo_bpm"].notna().any():
        audio = {"sample_rate": p.audio.sample_rate, "offset_s": p.audio.offset_s,
                 "duration_s": p.audio.duration_s, "pad": p.audio.pad}
        for f in folds:
            baseline[f] = tempo_baseline(tracks, test_ids[f], audio, getattr(ep, "workers", 0))
            m = baseline[f]["metrics"]
            log(f"evaluate: tempo baseline{'' if f is None else f' fold {f}'}: Acc1 {m['acc1']:.3f} Acc2 {m['acc2']:.3f} ({m['n']} tracks)")

    table = None
    store_paths = list(paths.stores)
    opened: dict[Path, Any] = {}

    def store_for(art: Any) -> Any:
        for sp in store_paths:
            if sp not in opened and sp.is_file():
                opened[sp] = SpectrogramStore(sp)
            if sp in opened and not _same_frontend(dict(art.frontend), dict(opened[sp].frontend)):
                return opened[sp]
        present = [sp for sp in store_paths if sp.is_file()]
        if not present:
            raise DataError(f"{store_paths[0]} not found (run the spectrogram stage first)")
        return opened[present[0]]  # evaluate_deep names the front-end difference

    results: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    preds: dict[str, list[tuple]] = {}
    probas: dict[str, list[dict[str, Any]]] = {}  # per model: one row per test track and fold
    cms: dict[str, tuple[np.ndarray, list[str]]] = {}
    tempo_heads: dict[str, dict[str, float]] = {}  # model -> track -> BPM (tempo heads), for tempo_hook
    try:
        for kind, name in names:
            if not found[name]:
                continue
            recs: dict[int | None, dict[str, Any]] = {}
            rows: list[tuple] = []
            prob_rows: list[dict[str, Any]] = []
            cm_sum = None
            labels: list[str] = []
            for f, d in sorted(found[name].items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
                if kind == "classical":
                    if table is None:
                        table = classical.load_table(paths.features)
                    art = classical_artifact.load(d)
                    res = evaluate_classical(art, table, test_ids[f])
                    y_pred_pairs = res["predictions"]
                    cm = res["confusion"]
                else:
                    art = deep.load(d)
                    res = evaluate_deep(art, store_for(art), test_ids[f], window_s=ep.window_s, overlap=ep.overlap,
                                        tag_threshold=ep.tag_threshold)
                    pred, y = res["_scores"][ep.aggregate]
                    lab = res["labels"]
                    y_pred_pairs = list(zip(res["_tids"], [lab[i] for i in y], [lab[i] for i in pred]))
                    cm = confusion_matrix(y, pred, len(lab))
                    tempo_heads.setdefault(name, {}).update(res.get("_tempo_est", {}))
                    if "tempo" in res and f in baseline:
                        est = baseline[f]["estimates"]
                        # the baseline on exactly the tracks this model's tempo metrics cover
                        ref = res["_tempo_ref"]
                        res["tempo_baseline"] = tempo_metrics([est.get(t, np.nan) for t in ref], list(ref.values()))
                labels = res["labels"]
                cm_sum = cm if cm_sum is None else cm_sum + cm
                rows += [(t, "" if f is None else f, a, b) for t, a, b in y_pred_pairs]
                prob_rows += prediction_rows(y_pred_pairs, res["_probs"], res["labels"], f)
                recs[f] = _fold_record(res, ep.aggregate)
                tr = recs[f]["track"]
                log(f"evaluate: {name}{'' if f is None else f' fold {f}'}: accuracy {tr['accuracy']:.3f} "
                    f"macro-F1 {tr['macro_f1']:.3f} ({res['n_tracks']} tracks, {res['n_skipped']} skipped)")
            if kind == "classical" and folds != [None]:
                # folds without their own artifact: train-ml scored fold f's model on fold f's test
                # part with these same functions (same tracks, same rule); take those numbers.
                tm = paths.train_metrics / f"{name}.json"
                per = json.loads(tm.read_text()).get("per_fold", {}) if tm.is_file() else {}
                for f in folds:
                    if f in recs:
                        continue
                    t = (per.get(str(f)) or {}).get("test")
                    if t:
                        n = int(t.get("n", 0))
                        recs[f] = {"source": "train-ml", "n_tracks": len(test_ids[f]),
                                   "n_skipped": len(test_ids[f]) - n, "track": _headline(t)}
            results[name] = _r(_combine_folds(recs))
            results[name]["kind"] = kind
            results[name]["aggregate"] = ep.aggregate if kind == "deep" else "per-track features"
            kinds[name] = kind
            preds[name] = rows
            probas[name] = prob_rows
            cms[name] = (cm_sum, labels)
    finally:
        for st in opened.values():
            st.close()

    # ---- outputs
    summary = {n: summary_entry(results[n]) for n in sorted(results)}
    bl_summary = None
    if baseline:
        bl = {"method": "librosa.feature.tempo (defaults) on the test tracks' audio",
              "failed": {t: r for b in baseline.values() for t, r in b["failed"].items()}}
        if folds == [None]:
            bl.update(_r(baseline[None]["metrics"]))
        else:
            bl.update({k: mean_std([b["metrics"][k] for b in baseline.values()])["mean"] for k in ("acc1", "acc2", "mae_bpm")})
            bl["n"] = sum(b["metrics"]["n"] for b in baseline.values())
            bl["per_fold"] = {str(f): b["metrics"] for f, b in baseline.items()}
        bl_summary = _r(bl)
    report.write_metrics(paths.metrics, results, summary, bl_summary)
    if tempo_hook is not None:
        tempo_hook(paths, p, tracks, test_ids, baseline, tempo_heads, log=log)
    agg = "mean of window probabilities" if ep.aggregate == "mean" else "majority vote over windows"
    fold_txt = "holdout test split" if folds == [None] else f"{len(folds)}-fold cross-validation (mean ± std over the folds evaluated)"
    protocol = (f"Protocol: {fold_txt}; deep models: {ep.window_s:g} s segments with {ep.overlap:.0%} overlap, "
                f"track prediction = {agg}; classical models: one feature row per track.")
    report.write_reports(paths.reports, summary, kinds, protocol=protocol, missing=missing, baseline=bl_summary,
                         confusion_rows=preds, prediction_rows=probas, confusion=cms)
    return summary
