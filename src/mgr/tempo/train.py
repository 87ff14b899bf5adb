"""Train the tempo estimator, compare it with the DSP estimate, export ONNX and write the card.

:func:`run` is the whole ``train-tempo`` stage: build the tempo sets (:mod:`mgr.tempo.dataset`),
fit :func:`mgr.tempo.model.build` on the train items with scale augmentation
(:func:`mgr.tempo.features.stretch`), keep the epoch with the best validation loss, ``tempo.ensemble``
times from consecutive seeds (their posteriors averaged, :func:`mgr.tempo.model.average`), then report
the learned estimator and the DSP estimate side by side (:mod:`mgr.tempo.protocol`, errors by kind)
on the validation set, the held-out styles, the held-out styles with real-music feels at GTZAN-like
tempi (``heldout_feels``), the click tracks and the dataset's annotated test tracks.
The artifact is ``models/tempo/model.onnx`` + ``model.json`` (sha256, what it was trained on,
the tempo prior's weights (:func:`mgr.tempo.features.prior_weights`, applied to the model's
posteriors wherever it is read), the validation numbers, and ``beats_dsp_on_validation``, which
``mgr predict --tempo auto`` reads).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mgr import tfsetup
from mgr.cards import CARD_FILE, trained_on
from mgr.data.tracks import load_tracks
from mgr.dsp import portable
from mgr.io import file_hash, write_json
from mgr.models.export import export_keras
from mgr.synth.styles import GENRES
from mgr.tempo import calibration as tempo_calibration
from mgr.tempo import dataset as D
from mgr.tempo import features as F
from mgr.tempo import protocol
from mgr.tempo.dataset import Item
from mgr.tempo.model import average, build

ONNX_FILE = "model.onnx"


def _features(items: list[Item]) -> np.ndarray:
    if not items:
        return np.zeros((0, F.N_BINS, F.N_CHANNELS), np.float32)
    return np.stack([F.evidence(i.env, F.fps(i.sr)) for i in items])


def augmented(items: list[Item], stretches: int, lo: float, hi: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and tempi of every item plus ``stretches`` copies at random tempo scales (log-
    uniform in [lo, hi], narrowed so the scaled tempo stays on the grid)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    g_lo, g_hi = F.BPM_GRID[0] * 1.03, F.BPM_GRID[-1] / 1.03
    for it in items:
        fr = F.fps(it.sr)
        X.append(F.evidence(it.env, fr))
        y.append(it.tempo_bpm)
        a, b = max(lo, g_lo / it.tempo_bpm), min(hi, g_hi / it.tempo_bpm)
        for _ in range(stretches if a < b else 0):
            s = float(portable.exp(rng.uniform(float(portable.log(a)), float(portable.log(b)))))
            X.append(F.evidence(F.stretch(it.env, s), fr))
            y.append(it.tempo_bpm * s)
    return np.stack(X).astype(np.float32), np.asarray(y, dtype=np.float64)


def fit(X: np.ndarray, bpm: np.ndarray, Xv: np.ndarray, bpmv: np.ndarray, tp: Any, log: Callable[[str], None] = print,
        *, seed: int | None = None, name: str = "tempo_estimator") -> Any:
    """Fit the Keras model (seed ``seed``, default ``tp.seed``); the weights of the epoch with the
    lowest validation loss are kept. TensorFlow runs as :func:`mgr.tfsetup.configure` sets it
    (fixed thread pools, op determinism, oneDNN capped at AVX2): the same weights on other machines."""
    tfsetup.configure()
    import keras

    model = build(width=tp.width, dropout=tp.dropout, seed=tp.seed if seed is None else seed, name=name)
    model.compile(optimizer=keras.optimizers.Adam(tp.learning_rate), loss="categorical_crossentropy")
    cbs = [keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=4, min_lr=1e-4, verbose=0)]
    val = None
    if len(Xv):
        val = (Xv, F.soft_targets(bpmv))
        cbs.append(keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True, verbose=0))
    else:
        cbs = [c for c in cbs if not isinstance(c, keras.callbacks.ReduceLROnPlateau)]
    h = model.fit(X, F.soft_targets(bpm), validation_data=val, epochs=tp.epochs, batch_size=tp.batch_size,
                  shuffle=True, verbose=0, callbacks=cbs)
    losses = h.history.get("val_loss") or h.history["loss"]
    log(f"train-tempo: {len(h.history['loss'])} epochs, best {'val ' if val else ''}loss {min(losses):.3f}")
    return model


def predict_keras(model: Any, X: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(BPM, confidence) of the Keras model, its posteriors moved to the prior of ``weights``
    (:func:`mgr.tempo.features.prior_weights`; ``None``: the training prior)."""
    if not len(X):
        return np.zeros(0), np.zeros(0)
    return F.readout(F.apply_prior(np.asarray(model.predict(X, batch_size=256, verbose=0)), weights))


def run(p: Any, *, tracks_dir: str | Path, split_csv: str | Path, out_dir: str | Path,
        log: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``train-tempo`` stage (params ``p``; the dataset directory holding tracks.csv, split.csv
    and the artifact directory, from the stage's cmd): ``(metrics, run facts)``."""

    tp = p.tempo
    t0 = time.perf_counter()
    train_styles = [g for g in GENRES if g not in tp.heldout_styles]
    sr = p.audio.sample_rate
    jobs = (D.synthetic_jobs("train", tp.train_clips, train_styles, seed=tp.seed, duration_s=tp.duration_s, sr=sr)
            + D.synthetic_jobs("val", tp.val_clips, train_styles, seed=tp.seed, duration_s=tp.duration_s, sr=sr)
            + D.synthetic_jobs("heldout", tp.heldout_clips, tp.heldout_styles, seed=tp.seed, duration_s=tp.duration_s, sr=sr)
            + D.synthetic_jobs("click", tp.click_clips, GENRES, seed=tp.seed, duration_s=tp.duration_s, sr=sr)
            + D.synthetic_jobs("click_sub", tp.click_clips, GENRES, seed=tp.seed, duration_s=tp.duration_s, sr=sr)
            + D.synthetic_jobs("feels", tp.feels_clips, tp.heldout_styles, seed=tp.seed, duration_s=tp.duration_s, sr=sr)
            + D.synthetic_jobs("calib", tp.calib_clips, train_styles, seed=tp.seed, duration_s=tp.duration_s, sr=sr))
    items = D.synthetic_items(jobs, tp.workers)
    sets: dict[str, list[Item]] = {k: [i for i in items if i.source == f"synthetic:{k}"] for k in D.KINDS}
    t_synth = time.perf_counter() - t0
    log(f"train-tempo: rendered {len(items)} synthetic clips in {t_synth:.1f} s")

    ds = {"train": [], "val": [], "test": []}
    ds_dir = Path(tracks_dir)
    split_csv = Path(split_csv)
    if tp.use_dataset and (ds_dir / "tracks.csv").is_file() and split_csv.is_file():
        import pandas as pd

        audio = {"sample_rate": p.audio.sample_rate, "offset_s": p.audio.offset_s,
                 "duration_s": p.audio.duration_s, "pad": p.audio.pad}
        exclude = list(tp.heldout_styles) if p.data.source == "synthetic" else []
        ds = D.dataset_items(load_tracks(ds_dir), pd.read_csv(split_csv), audio, exclude_genres=exclude, workers=tp.workers)
        log(f"train-tempo: {p.data.source} tracks with a tempo: " + ", ".join(f"{k} {len(v)}" for k, v in ds.items()))
    train_items = sets["train"] + ds["train"]
    val_items = sets["val"] + ds["val"]

    X, bpm = augmented(train_items, tp.stretches, tp.stretch_min, tp.stretch_max, tp.seed)
    Xv = _features(val_items)
    bpmv = np.array([i.tempo_bpm for i in val_items])
    t1 = time.perf_counter()
    # an ensemble: members from seeds seed, seed + 1, ... whose posteriors are averaged
    model = average([fit(X, bpm, Xv, bpmv, tp, log, seed=tp.seed + k, name=f"member_{k}") for k in range(tp.ensemble)])
    t_fit = time.perf_counter() - t1
    weights = None if tp.prior_median_bpm is None else F.prior_weights(bpm, tp.prior_median_bpm, tp.prior_octaves)

    eval_sets = {"validation": val_items, "heldout_styles": sets["heldout"], "clicks": sets["click"],
                 "clicks_subdivided": sets["click_sub"], "heldout_feels": sets["feels"],
                 f"{p.data.source}_test": ds["test"]}
    results: dict[str, Any] = {}
    for name, its in eval_sets.items():
        if not its:
            continue
        ref = np.array([i.tempo_bpm for i in its])
        Xs = _features(its)
        probs = np.asarray(model.predict(Xs, batch_size=256, verbose=0))
        est = {"dsp": np.array([i.dsp_bpm for i in its]), "learned": F.readout(F.apply_prior(probs, weights))[0]}
        if weights is not None:  # what the prior does: the same model read with its training prior
            est["learned (training prior)"] = F.readout(probs)[0]
        results[name] = protocol.compare(est, ref, [i.genre for i in its])
        m, d = results[name]["learned"], results[name]["dsp"]
        log(f"train-tempo: {name} ({m['n']}): learned Acc1 {m['acc1']:.3f} Acc2 {m['acc2']:.3f} | "
            f"dsp Acc1 {d['acc1']:.3f} Acc2 {d['acc2']:.3f}")
    beat = protocol.beats(results["validation"]["learned"], results["validation"]["dsp"]) if "validation" in results else False
    # calibrated confidence (mgr.tempo.calibration): fitted on the calibration clips (train styles:
    # feels, plain, subdivided clicks; validation stopped training, so it flatters the model), its
    # reliability on every set
    cal_sets = {"calibration": sets["calib"], **eval_sets}
    calib, calib_report = tempo_calibration.calibrate(
        lambda Xs: predict_keras(model, Xs, weights), {k: (_features(v), np.array([i.tempo_bpm for i in v]))
                                                        for k, v in cal_sets.items() if v},
        fit_on="calibration" if sets["calib"] else "validation")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_keras(model, out_dir / ONNX_FILE, sample=X[:16])
    card = {
        "kind": "tempo",
        "name": "tempo",
        "onnx_file": ONNX_FILE,
        "sha256": file_hash(out_dir / ONNX_FILE),
        "input": {"name": "input", "shape": [None, F.N_BINS, F.N_CHANNELS], "features": "mgr.tempo.features.evidence"},
        "output": {"name": "tempo", "grid": {"bpm_min": F.BPM_MIN, "bins_per_octave": F.BINS_PER_OCTAVE, "n_bins": F.N_BINS}},
        "sample_rate": sr,
        "method": ("multi-band onset envelopes -> autocorrelation + Fourier tempogram on a log-BPM grid -> "
                   "dilated 1-D CNN over the grid (softmax), trained with scale augmentation; the mean of "
                   f"{tp.ensemble} such models from different seeds, then the tempo prior"),
        "trained_on": {**trained_on(p.data, len(ds["train"])), "tempo_set": {
            "train_styles": train_styles, "heldout_styles": list(tp.heldout_styles), "train_clips": len(sets["train"]),
            "dataset_train_tracks": len(ds["train"]), "stretches": tp.stretches, "duration_s": tp.duration_s, "seed": tp.seed, "ensemble": tp.ensemble}},
        "prior": None if weights is None else {
            "kind": "log-normal", "median_bpm": tp.prior_median_bpm, "octaves": tp.prior_octaves,
            "floor": F.PRIOR_FLOOR, "weights": [round(float(w), 8) for w in weights],
            "note": "posteriors x weights, renormalised (label-shift correction from the training sets' tempo prior)"},
        "validation": results.get("validation"),
        "beats_dsp_on_validation": beat,
        "confidence_calibration": calib,
        "license": "MIT (weights trained by this project's pipeline)",
    }
    write_json(out_dir / CARD_FILE, card)
    log(f"train-tempo: wrote {out_dir}/ (beats DSP on validation: {beat})")
    return {"sets": results, "beats_dsp_on_validation": beat, "confidence_reliability": calib_report,
            "n": {"train": len(train_items), "train_augmented": int(len(X)), "validation": len(val_items),
                  "heldout_styles": len(sets["heldout"]), "clicks": len(sets["click"]),
                  "clicks_subdivided": len(sets["click_sub"]), "heldout_feels": len(sets["feels"]),
                  "calibration": len(sets["calib"]),
                  "dataset_test": len(ds["test"])}}, \
        {"seconds": round(time.perf_counter() - t0, 3), "render_seconds": round(t_synth, 3), "train_seconds": round(t_fit, 3)}
