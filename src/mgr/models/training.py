"""Deep training from the HDF5 spectrogram store: callbacks, fit loop, cards, artifacts, k-fold
(the input pipeline is :mod:`mgr.models.feeder`).

Protocol (the same for every model in :data:`mgr.models.deep.REGISTRY`):

- **Data**: the store (``mgr.features.store.SpectrogramStore`` or any object with its reader API).
  In k-fold mode (``store.fold`` has values >= 0) a run uses one fold's assignment:
  ``store.indices("train"|"val", fold=f)`` and ``store.stats(fold=f)``; otherwise ``fold=None``.
  :func:`train_model` trains fold ``train.fold`` (0 by default); the stage
  (:func:`run_train_dl`) trains every fold ``0..k-1`` in turn when ``train.all_folds`` is true
  (the default), else fold ``train.fold`` only.
- **Feeder** (:func:`mgr.models.feeder.window_feeder`, a ``keras.utils.PyDataset``, thread workers from
  ``train.workers``): every batch draws fresh random windows of ``train.window_s`` seconds from
  the **train** tracks only (``store.random_windows``), seeded by ``(seed, epoch, batch)`` so a
  run is reproducible; optional SpecAugment-style masking (2 band + 2 time masks, filled with the
  band mean, i.e. 0 after normalisation) and mixup (per-sample Beta(a, a), applied to inputs,
  targets and sample weights).
- **Normalisation**: the store's train statistics, as a fixed ``Normalization`` layer inside the
  model (``mgr.models.deep.build(mean=, std=)``); the feeder passes raw log-mel windows.
- **Imbalance**: class weights ``n / (n_classes * count)`` over train tracks, applied as
  per-output sample weights (genre only); tempo samples without a reference get weight 0.
- **Validation** (val split only): up to ``train.val_windows_per_track`` evenly spaced
  windows of each val track (50 % overlap grid). After each epoch :class:`_ValCallback`
  computes the window-level val loss (monitored by EarlyStopping, restoring the best weights,
  and by ReduceLROnPlateau) and track-level metrics (mean window probability per track) with
  the same functions the evaluate stage uses (``mgr.evaluation.metrics``).
- **Logging**: dvclive into ``dvclive/<name>/`` (``plots/metrics/*.tsv`` are the DVC plots);
  in a k-fold run of every fold, fold ``train.fold``'s curves only.
- **Artifacts**: ``models/<name>/model.keras`` + ``model.onnx`` + ``model.json`` (see
  :func:`save_artifact`; the ONNX file, checked against Keras at export, is what evaluate and
  ``mgr predict`` run), written to a temporary directory and renamed when complete. k-fold with
  ``train.all_folds``: also ``models/<name>/fold_<f>/`` (same three files, card ``fold: f``) for
  every fold, the top-level set being a copy of fold ``train.fold``'s; the evaluate stage scores
  each fold's test part with its own model and reports the mean over folds.
- **Metrics** (``metrics/train-dl/<name>.json``): the run's numbers; k-fold with every fold
  trained: ``folds`` (k), ``val`` / ``val_std`` = mean / std over folds, ``per_fold.<f>`` the
  per-fold metrics (see :func:`kfold_metrics`). Results only: the durations (``train_seconds``,
  ``seconds_per_epoch``), versions and host go to ``reports/runs/train-dl/<name>.json``
  (:mod:`mgr.runs`), so a rerun with the same inputs changes no metric.
- **Determinism**: ``keras.utils.set_random_seed(train.seed)`` and TensorFlow op determinism
  (:data:`DETERMINISTIC`): on one machine a rerun gives bit-identical weights and metrics.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mgr import cards, tfsetup
from mgr.distributed.strategy import train_scope
from mgr.dsp import portable
from mgr.errors import DataError, ParamsError
from mgr.evaluation import metrics as ev
from mgr.evaluation.calibration import calibration_record
from mgr.evaluation.metrics import mean_std
from mgr.features.store import SpectrogramStore
from mgr.io import atomic_path, library_versions, write_json
from mgr.models import deep, distribution
from mgr.models.deep import bpm_from_probs, bpm_to_class, write_artifact
from mgr.models.feeder import (
    Targets,
    has_tempo,
    make_targets,
    val_windows,
    window_feeder,
)
from mgr.params import DL_MODELS
from mgr.pretrained import musicnn, transfer
from mgr.runs import split_run_facts, write_run_facts

VERSION_PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "numpy", "h5py", "dvclive")


# ------------------------------------------------------------------------------ validation


def _ce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return -(y * portable.log(np.clip(p, 1e-7, 1.0))).sum(axis=1)  # portable: the same bits on every machine


def _bce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * portable.log(p) + (1 - y) * portable.log(1 - p)).mean(axis=1)


def val_metrics(
    probs: dict[str, np.ndarray], track_index: np.ndarray, store, targets: Targets, labels: list[str]
) -> dict[str, Any]:
    """Window-level val loss and track-level metrics (mean of window probabilities per track)."""

    out: dict[str, Any] = {}
    loss = 0.0
    for k, p in probs.items():
        y, w = targets.y[k][track_index], targets.w_val[k][track_index]
        per = _bce(y, p) if k == "tags" else _ce(y, p)
        lk = float((per * w).sum() / max(len(per), 1))  # keras' sum-over-batch-size reduction
        out[f"{k}_loss"] = lk
        loss += lk
    out["loss"] = loss
    g_true = np.asarray(store.genre_idx)[track_index]
    out["window_accuracy"] = float(np.mean(probs["genre"].argmax(axis=1) == g_true))
    tracks, scores, _ = ev.aggregate_tracks(probs["genre"], track_index, "mean")
    cm = ev.classification_metrics(np.asarray(store.genre_idx)[tracks], scores, labels)
    out["track"] = {k: cm[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "top3")}
    out["track"]["per_class"] = cm["per_class"]
    if "tempo" in probs and targets.tempo_bins:
        _, tscores, tpred = ev.aggregate_tracks(probs["tempo"], track_index, "mean")
        ref = np.asarray(store.tempo_bpm, dtype=float)[tracks]

        est = bpm_from_probs(tscores, targets.tempo_bins["centres"], log=targets.tempo_bins["kind"] == "log")
        known = np.isfinite(ref)
        cls = bpm_to_class(ref, targets.tempo_bins["edges"])
        tm = ev.tempo_metrics(est, ref)
        tm["class_accuracy"] = float(np.mean(tpred[known] == cls[known])) if known.any() else float("nan")
        out["tempo"] = tm
    if "tags" in probs:
        _, tg, _ = ev.aggregate_tracks(probs["tags"], track_index, "mean")
        tagm = ev.tag_metrics(np.asarray(store.tags)[tracks], tg, list(store.tag_vocab))
        out["tags"] = {k: tagm[k] for k in ("n", "roc_auc", "pr_auc", "n_tags_used")}
    return out


def _flat_epoch_metrics(m: dict[str, Any]) -> dict[str, float]:
    """The scalar val metrics logged each epoch (names as they appear in dvclive plots)."""
    flat = {"val_loss": m["loss"], "val_window_accuracy": m["window_accuracy"]}
    for k in ("accuracy", "macro_f1", "top3"):
        flat[f"val_track_{k}"] = m["track"][k]
    if "tempo" in m:
        flat["val_tempo_acc1"] = m["tempo"].get("acc1", float("nan"))
        flat["val_tempo_class_accuracy"] = m["tempo"]["class_accuracy"]
    if "tags" in m:
        flat["val_tags_roc_auc"] = m["tags"]["roc_auc"]
    return {k: float(v) for k, v in flat.items()}


def _callbacks(model, Xv, tv, store, targets, labels, tp, live, state: dict):
    import keras

    class ValCallback(keras.callbacks.Callback):
        """Val loss + track-level metrics into ``logs`` (before EarlyStopping/ReduceLR see them)."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if Xv is not None:
                probs = predict_dict(self.model, Xv)
                m = val_metrics(probs, tv, store, targets, labels)
                logs.update(_flat_epoch_metrics(m))
                state["last"] = m
            lr = self.model.optimizer.learning_rate
            logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(lr)))

    class LiveCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if live is None:
                return
            for k, v in sorted((logs or {}).items()):
                if isinstance(v, (int, float, np.floating)) and math.isfinite(float(v)):
                    name = k if k.startswith("val_") or k == "learning_rate" else f"train_{k}"
                    live.log_metric(name, float(v))
            live.next_step()

    monitor = "val_loss" if Xv is not None else "loss"
    return [
        ValCallback(),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=tp.reduce_lr_patience, min_lr=1e-6),
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=tp.early_stopping_patience, restore_best_weights=True
        ),
        LiveCallback(),
    ]


def predict_dict(model, X: np.ndarray, batch_size: int = 128) -> dict[str, np.ndarray]:
    out = model.predict(X[..., None] if X.ndim == 3 else X, batch_size=batch_size, verbose=0)
    if not isinstance(out, dict):
        out = dict(zip(model.output_names, out if isinstance(out, (list, tuple)) else [out]))
    return {k: np.asarray(v) for k, v in out.items()}


# ------------------------------------------------------------------------------ training
@dataclass
class TrainResult:
    model: Any
    card: dict
    metrics: dict
    history: dict


def store_fold(store, fold: int) -> int | None:
    """``fold`` if the store holds a k-fold assignment, else ``None``."""
    f = np.asarray(store.fold)
    if f.size and (f >= 0).any():
        k = int(f.max()) + 1
        if not 0 <= fold < k:
            raise DataError(f"train.fold={fold} but the split has {k} folds (0..{k - 1})")
        return int(fold)
    return None


def store_hash(store) -> str | None:
    for attr in ("content_hash", "hash"):
        v = getattr(store, attr, None)
        if isinstance(v, str) and v:
            return v
    attrs = getattr(store, "attrs", None)
    if isinstance(attrs, dict):
        v = attrs.get("content_hash")
        if v:
            return str(v)
    return None


def train_model(
    name: str,
    store: Any,
    tp: Any,
    mp: Any,
    *,
    live_dir: str | Path | None = None,
    verbose: int = 0,
) -> TrainResult:
    """Train registry model ``name`` on ``store`` under the protocol in the module doc.

    ``tp`` is a :class:`mgr.params.TrainParams`, ``mp`` the model's :class:`DlModelParams`.
    Returns the trained Keras model, its card (without file names), the metrics and history.
    """
    tfsetup.prepare_env()  # before TensorFlow's first import in this process
    import keras

    if name not in deep.REGISTRY:
        raise DataError(f"unknown deep model {name!r} (known: {', '.join(deep.REGISTRY)})")
    labels = list(store.labels)
    if len(labels) < 2:
        raise DataError(f"the store has {len(labels)} genre(s); at least 2 are needed to train")
    fold = store_fold(store, getattr(tp, "fold", 0))
    train_idx = np.asarray(store.indices("train", fold=fold), dtype=np.int64)
    val_idx = np.asarray(store.indices("val", fold=fold), dtype=np.int64)
    if train_idx.size == 0:
        raise DataError("no train tracks in the spectrogram store (check the split)")
    window_frames = int(store.frames_for_seconds(tp.window_s))
    mean, std = (np.asarray(a, dtype=np.float32) for a in store.stats(fold=fold))
    pretrained = name in deep.PRETRAINED
    if pretrained:  # the weights fix the front end and the window; they take its raw values
        want = deep.PRETRAINED[name]
        if store.frontend.get("preset") != want:
            raise DataError(f"{name} trains on a store of the {want!r} front end (stage spectrogram-{want}); "
                            f"this store's is {store.frontend.get('preset')!r}")
        window_frames = int(deep.PRETRAINED_WINDOW_FRAMES[name])
    n_mels = int(mean.shape[0])

    tempo = name in deep.TEMPO_MODELS and has_tempo(store, train_idx)
    n_tags = len(store.tag_vocab) if tp.tags_head else 0
    targets = make_targets(store, train_idx, tp, tempo=tempo, tags=n_tags > 0)

    keras.utils.set_random_seed(tp.seed)
    deterministic_ops()  # same machine, same inputs -> bit-identical weights and metrics
    batch = int(mp.batch_size or tp.batch_size)
    lr = float(mp.learning_rate or tp.learning_rate)

    with train_scope(tp):
        model = deep.build(
            name,
            (n_mels, window_frames, 1),
            len(labels),
            n_tempo_classes=len(targets.tempo_bins["centres"]) if tempo else 0,
            n_tags=n_tags,
            params=mp,
            mean=mean,
            std=std,
        )
        deep.compile_model(model, lr, targets.outputs)
    steps = tp.steps_per_epoch or max(1, math.ceil(train_idx.size * tp.windows_per_track / batch))
    feeder = window_feeder(
        store,
        train_idx,
        window_frames=window_frames,
        batch_size=batch,
        steps=steps,
        targets=targets,
        fill=mean,
        specaugment=tp.specaugment,
        mixup_alpha=tp.mixup,
        seed=tp.seed,
        workers=tp.workers,
    )
    Xv, tv = val_windows(store, val_idx, window_frames, tp.val_windows_per_track) if val_idx.size else (None, None)

    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False, report=None)
        live.log_params({"model": name, **dataclasses.asdict(mp), "batch_size_effective": batch})
    state: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        hist = model.fit(
            feeder, epochs=mp.epochs, callbacks=_callbacks(model, Xv, tv, store, targets, labels, tp, live, state),
            verbose=verbose,
        )
        finetune = int(getattr(mp, "finetune_epochs", 0) or 0) if pretrained else 0
        if finetune:  # then end to end at a low rate (BatchNorm statistics stay the pretrained ones)
            done = len(hist.history.get("loss", []))
            transfer.set_backbone_trainable(model, True)
            with train_scope(tp):
                deep.compile_model(model, float(mp.finetune_learning_rate), targets.outputs)
            more = model.fit(
                feeder, initial_epoch=done, epochs=done + finetune, verbose=verbose,
                callbacks=_callbacks(model, Xv, tv, store, targets, labels, tp, live, state),
            )
            for k, v in more.history.items():
                hist.history.setdefault(k, []).extend(v)
    finally:
        if live is not None:
            live.end()
    train_s = time.perf_counter() - t0
    history = {k: [float(x) for x in v] for k, v in hist.history.items()}
    epochs_run = len(history.get("loss", []))

    # final val metrics with the restored (best) weights
    vm: dict[str, Any] = {}
    val_probs = None
    if Xv is not None:
        val_probs = predict_dict(model, Xv)
        vm = val_metrics(val_probs, tv, store, targets, labels)
    monitor = "val_loss" if Xv is not None else "loss"
    best_epoch = int(np.nanargmin(history[monitor])) + 1 if history.get(monitor) else epochs_run
    metrics = {
        "model": name,
        "n_params": int(model.count_params()),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "train_seconds": round(train_s, 3),
        "seconds_per_epoch": round(train_s / max(epochs_run, 1), 3),
        "steps_per_epoch": steps,
        "batch_size": batch,
        "n_train_tracks": int(train_idx.size),
        "n_val_tracks": int(val_idx.size),
        "n_val_windows": int(0 if Xv is None else len(Xv)),
        "fold": fold,
        # headline val numbers only (dvc metrics show stays readable); per-class ones are in the card
        "val": {k: ({kk: vv for kk, vv in v.items() if kk != "per_class"} if isinstance(v, dict) else v)
                for k, v in vm.items()},
    }
    card = make_card(
        name, store, tp, mp, window_frames=window_frames, mean=mean, std=std, targets=targets,
        n_tags=n_tags, val=vm, fold=fold, input_shape=(n_mels, window_frames, 1),
    )
    # predict's out-of-distribution check: per-band log-mel statistics of the training tracks
    card["distribution"] = distribution.store_distribution(store, train_idx, val_idx)
    if val_probs is not None:  # temperature of the genre probabilities (applied by evaluate and predict)
        tracks = np.unique(tv)
        card["calibration"] = calibration_record(val_probs["genre"], np.asarray(store.genre_idx)[tracks], tv)
    return TrainResult(model=model, card=card, metrics=metrics, history=history)


# Op determinism (``tf.config.experimental.enable_op_determinism``): with the seeds of
# ``keras.utils.set_random_seed`` a rerun on the same machine gives bit-identical weights, so
# ``dvc repro --force`` leaves the metrics unchanged. Set to False (before training) to trade that
# for speed; the run facts record which.
DETERMINISTIC = True


def deterministic_ops() -> dict:
    """When :data:`DETERMINISTIC`: TensorFlow's op determinism, fixed thread pools and oneDNN's
    instruction-set cap (:func:`mgr.tfsetup.configure`, idempotent); returns what is in force."""
    if DETERMINISTIC:
        return tfsetup.configure()
    return {"deterministic_ops": False}


def _runs_root(metrics_dir: Path) -> Path:
    """The project root of ``<root>/metrics/train-dl`` (run facts: ``<root>/reports/runs/``);
    for another metrics folder, its parent."""
    return metrics_dir.parent.parent if metrics_dir.parent.name == "metrics" else metrics_dir.parent


def _versions() -> dict:
    return library_versions(*VERSION_PACKAGES)


def make_card(name, store, tp, mp, *, window_frames, mean, std, targets, n_tags, val, fold, input_shape) -> dict:
    frontend = dict(store.frontend)
    audio_keys = ("sample_rate", "sr", "duration_s", "offset_s", "pad", "mono")
    return {
        "name": name,
        "kind": "deep",
        "labels": list(store.labels),
        "versions": library_versions(*VERSION_PACKAGES),
        # execution knobs (train.workers) are not part of the model: a card is the same bits on every machine
        "params": {"model": dataclasses.asdict(mp), "train": {k: v for k, v in dataclasses.asdict(tp).items() if k != "workers"}},
        "train_data_hash": store_hash(store),
        "val_metrics": val,
        "frontend": frontend,
        "audio": dict(getattr(store, "audio", None) or {k: frontend[k] for k in audio_keys if k in frontend}),
        "window_s": float(tp.window_s),
        "window_frames": int(window_frames),
        "input_shape": [int(s) for s in input_shape],
        "normalisation": {
            "where": "inside the model (keras.layers.Normalization, fixed); feed raw log-mel windows",
            "mean": [float(x) for x in mean],
            "std": [float(x) for x in std],
        } if name not in deep.PRETRAINED else {
            "where": "none: the pretrained backbone takes its front end's raw values (its own input BatchNormalization)",
        },
        **({"pretrained": musicnn.provenance(mp.backbone)} if name in deep.PRETRAINED else {}),
        "tempo_bins": targets.tempo_bins,
        "tag_vocab": list(store.tag_vocab) if n_tags else [],
        "outputs": sorted(targets.outputs),
        "class_weights": targets.class_weights,
        "fold": fold,
        "model_file": "model.keras",
    }


def save_artifact(model, card: dict, model_dir: str | Path) -> Path:
    """Write ``model.keras`` + ``model.onnx`` + ``model.json`` into ``model_dir`` atomically (dir
    renamed at the end); see :func:`mgr.models.deep.write_artifact`."""

    model_dir = Path(model_dir)
    with atomic_path(model_dir, is_dir=True) as tmp:
        write_artifact(model, card, tmp)
    return model_dir


def store_n_folds(store) -> int:
    """The number of folds of the store's k-fold assignment (0 without one)."""
    f = np.asarray(store.fold)
    return int(f.max()) + 1 if f.size and (f >= 0).any() else 0


def _mean_std_tree(trees: list[dict]) -> tuple[dict, dict]:
    """Mean and std (ddof=0, NaN ignored) of every numeric leaf of per-fold metric dicts.

    Counts (``n``, ``n_*``) and non-numeric leaves are left out; the nesting is kept."""

    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    keys = [k for k in trees[0]] if trees else []
    for k in keys:
        vals = [t.get(k) for t in trees]
        if all(isinstance(v, dict) for v in vals):
            m, s = _mean_std_tree(vals)
            if m:
                mean[k], std[k] = m, s
        elif k != "n" and not k.startswith("n_") and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals
        ):
            ms = mean_std([float(v) for v in vals])
            mean[k], std[k] = ms["mean"], ms["std"]
    return mean, std


def kfold_metrics(per_fold: dict[int, dict], main_fold: int) -> dict:
    """The train-dl metrics of a k-fold run: fold ``main_fold``'s run (the top-level artifact)
    as the base, ``val`` / ``val_std`` = mean / std over folds of the val metrics, ``per_fold``
    the detail, ``train_seconds`` the total; ``folds`` the number of folds trained."""
    base = dict(per_fold[main_fold])
    vals = [m["val"] for _, m in sorted(per_fold.items()) if m.get("val")]
    mean, std = _mean_std_tree(vals) if vals else ({}, {})
    base.update(
        folds=len(per_fold),
        fold=main_fold,
        val=mean,
        val_std=std,
        train_seconds=round(sum(m["train_seconds"] for m in per_fold.values()), 3),
        per_fold={str(f): m for f, m in sorted(per_fold.items())},
    )
    return base


def run_train_dl(
    name: str,
    params: Any,
    *,
    store_path: str | Path,
    models_dir: str | Path,
    metrics_dir: str | Path,
    live_root: str | Path | None = "dvclive",
    verbose: int = 0,
    log: Any = print,
) -> dict:
    """The train-dl stage: train ``name`` with ``params.train`` / ``params.dl.<name>``, write
    ``models/<name>/`` and ``metrics/train-dl/<name>.json``; returns the metrics.

    k-fold split with ``train.all_folds`` (the default): one model per fold ``f`` (trained on
    fold f's assignment) in ``models/<name>/fold_<f>/``, and fold ``train.fold``'s model also at
    the top level (``models/<name>/model.keras`` + ``model.onnx`` + ``model.json``, what predict loads); the
    whole directory is written to a temporary sibling and renamed when every fold is done.
    dvclive logs fold ``train.fold``'s run only (``dvclive/<name>/``). The metrics hold the
    mean / std over folds (:func:`kfold_metrics`). Holdout split, or ``all_folds: false``: one
    model (fold ``train.fold`` in k-fold mode) at the top level, no ``fold_<f>/``."""
    import shutil

    if name not in DL_MODELS:
        raise ParamsError(f"train-dl: unknown model {name!r} (known: {', '.join(DL_MODELS)})")
    store_path = Path(store_path)
    if not store_path.is_file():
        raise DataError(f"{store_path} not found (run the spectrogram stage first: dvc repro spectrogram)")
    mp = getattr(params.dl, name)
    tp = params.train
    live_dir = None if live_root is None else Path(live_root) / name
    model_dir = Path(models_dir) / name
    with SpectrogramStore(store_path) as store:
        main_fold = store_fold(store, getattr(tp, "fold", 0))  # validates train.fold
        k = store_n_folds(store)
        if main_fold is None or k < 2 or not getattr(tp, "all_folds", True):
            res = train_model(name, store, tp, mp, live_dir=live_dir, verbose=verbose)
            res.card["trained_on"] = cards.trained_on(params.data, res.metrics.get("n_train_tracks"))
            save_artifact(res.model, res.card, model_dir)
            metrics = res.metrics
        else:
            per_fold: dict[int, dict] = {}
            with atomic_path(model_dir, is_dir=True) as tmp:
                for f in range(k):
                    tpf = dataclasses.replace(tp, fold=f)
                    res = train_model(
                        name, store, tpf, mp, live_dir=live_dir if f == main_fold else None, verbose=verbose,
                    )
                    res.card["trained_on"] = cards.trained_on(params.data, res.metrics.get("n_train_tracks"))
                    write_artifact(res.model, res.card, tmp / f"fold_{f}")
                    per_fold[f] = res.metrics
                    acc = (res.metrics.get("val") or {}).get("track", {}).get("accuracy")
                    if log is not None:
                        log(f"{name} fold {f} ({f + 1}/{k}): {res.metrics['epochs_run']} epochs in "
                            f"{res.metrics['train_seconds']:.0f} s"
                            + (f", val track accuracy {acc:.3f}" if acc is not None else ""))
                    del res
                    import keras

                    keras.backend.clear_session()  # free the finished fold's graph state
                for fn in ("model.keras", "model.onnx", "model.json"):
                    shutil.copy2(tmp / f"fold_{main_fold}" / fn, tmp / fn)
            metrics = kfold_metrics(per_fold, main_fold)
    # metrics = results only; durations (and versions, host) go to reports/runs/train-dl/<name>.json

    quality, facts = split_run_facts(metrics)
    write_json(Path(metrics_dir) / f"{name}.json", quality)
    write_run_facts(f"train-dl/{name}", {**facts, "deterministic_ops": DETERMINISTIC, "tensorflow": deterministic_ops(),
                                         "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                         "versions": _versions()},
                    root=_runs_root(Path(metrics_dir)))
    return metrics
