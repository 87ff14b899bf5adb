"""Reporting: what evaluate writes — metrics files, the leaderboard, confusion data and figures,
and the per-track predictions ``mgr compare`` pairs across commits.

Deterministic bytes: floats rounded to :data:`ROUND` decimals, nothing time-dependent, PNGs
without a software stamp, so ``dvc repro --force -s evaluate`` rewrites identical files.
Heavy imports (pandas, matplotlib) stay inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgr.errors import ParamsError
from mgr.evaluation.calibration import ECE_BINS
from mgr.io import atomic_path, write_json
from mgr.params import DL_MODELS, ml_instance

ROUND = 6  # decimals written to metrics and prediction files (stable bytes across reruns)


def write_metrics(metrics_dir: Path, results: dict[str, dict[str, Any]], summary: dict[str, dict[str, Any]],
                  baseline: dict[str, Any] | None) -> None:
    """``<model>.json`` per scored model, ``summary.json`` and ``tempo_baseline.json`` (removed when
    there is no baseline); a model's file from an earlier run whose model is no longer listed is
    removed (it holds ``"kind"``)."""
    keep = set(results)
    for old in metrics_dir.glob("*.json") if metrics_dir.is_dir() else []:
        if old.stem not in keep and old.stem != "summary":
            try:
                ml_instance(old.stem)
                stale = True
            except ParamsError:
                stale = old.stem in DL_MODELS
            if not stale:
                try:
                    stale = json.loads(old.read_text()).get("kind") in ("classical", "deep")
                except (OSError, ValueError, AttributeError):
                    stale = False
            if stale:
                old.unlink()
    for name, m in results.items():
        write_json(metrics_dir / f"{name}.json", m)
    write_json(metrics_dir / "summary.json", summary)
    bl_path = metrics_dir / "tempo_baseline.json"
    if baseline is not None:
        write_json(bl_path, baseline)
    elif bl_path.exists():
        bl_path.unlink()


def write_reports(reports_dir: Path, summary: dict[str, dict[str, Any]], kinds: dict[str, str], *, protocol: str,
                  missing: Sequence[str], baseline: dict[str, Any] | None,
                  confusion_rows: dict[str, list[tuple]], prediction_rows: dict[str, list[dict[str, Any]]],
                  confusion: dict[str, tuple[Any, list[str]]]) -> None:
    """``leaderboard.md``, ``confusion/<model>.csv`` (DVC plot data), ``predictions/<model>.csv`` and
    ``figures/confusion_<model>.png`` under ``reports_dir``, each directory replaced atomically."""
    import pandas as pd

    with atomic_path(reports_dir / "leaderboard.md") as tmp:
        tmp.write_text(leaderboard_markdown(summary, kinds, protocol=protocol, missing=missing, baseline=baseline))
    with atomic_path(reports_dir / "confusion", is_dir=True) as tmp:
        for name, rows in confusion_rows.items():
            pd.DataFrame(rows, columns=["track_id", "fold", "actual", "predicted"]).to_csv(tmp / f"{name}.csv", index=False)
    with atomic_path(reports_dir / "predictions", is_dir=True) as tmp:
        for name, prow in prediction_rows.items():
            write_predictions(prow, tmp / f"{name}.csv")
    with atomic_path(reports_dir / "figures", is_dir=True) as tmp:
        for name, (cm, labels) in confusion.items():
            if cm is not None:
                plot_confusion_png(cm, labels, tmp / f"confusion_{name}.png", f"{name} (test, track level)")


def _fmt(x: Any, std: Any = None) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    s = f"{x:.3f}"
    return s + (f" ± {std:.3f}" if isinstance(std, (int, float)) and std is not None else "")


def leaderboard_markdown(
    summary: dict[str, dict[str, Any]], kinds: dict[str, str], *, protocol: str, missing: Sequence[str] = (),
    baseline: dict[str, Any] | None = None,
) -> str:
    """``reports/leaderboard.md``: a row per model, best first (accuracy, then macro-F1, then name)."""
    order = sorted(summary, key=lambda n: (-(summary[n]["accuracy"] or 0.0), -(summary[n]["macro_f1"] or 0.0), n))
    has_tempo = any("tempo_acc1" in summary[n] for n in order) or baseline is not None
    has_tags = any("tags_roc_auc" in summary[n] for n in order)
    has_folds = any("n_folds" in summary[n] for n in order)
    head = ["#", "model", "kind", "accuracy", "balanced acc.", "macro-F1", "top-3", "ECE", "ECE raw", "Brier",
            "tracks (skipped)"]
    if has_folds:
        head.insert(4, "folds")
    if has_tempo:
        head += ["tempo Acc1", "tempo Acc2"]
    if has_tags:
        head += ["tags ROC-AUC", "tags PR-AUC"]
    lines = [
        "# Leaderboard",
        "",
        f"Test split, track level. {protocol}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for rank, n in enumerate(order, 1):
        s = summary[n]
        std = s.get("accuracy_std") if s.get("n_folds", 1) > 1 else None
        row = [str(rank), n, kinds.get(n, "?"), _fmt(s["accuracy"], std), _fmt(s["balanced_accuracy"]),
               _fmt(s["macro_f1"]), _fmt(s["top3"]), _fmt(s.get("ece")), _fmt(s.get("ece_uncalibrated")),
               _fmt(s.get("brier")),
               f"{s['n_tracks']} ({s['n_skipped']})"]
        if has_folds:
            row.insert(4, str(s.get("n_folds", 1)))
        if has_tempo:
            row += [_fmt(s.get("tempo_acc1")), _fmt(s.get("tempo_acc2"))]
        if has_tags:
            row += [_fmt(s.get("tags_roc_auc")), _fmt(s.get("tags_pr_auc"))]
        lines.append("| " + " | ".join(row) + " |")
    if baseline is not None:
        lines += ["", f"Tempo baseline (`librosa.feature.tempo`, same test tracks): Acc1 {_fmt(baseline.get('acc1'))}, "
                  f"Acc2 {_fmt(baseline.get('acc2'))}, MAE {_fmt(baseline.get('mae_bpm'))} BPM "
                  f"over {baseline.get('n', 0)} tracks."]
    if missing:
        lines += ["", "Listed in params but without a trained artifact (not ranked): " + ", ".join(f"`{m}`" for m in missing) + "."]
    lines += [
        "",
        "accuracy = headline track-level accuracy (± std over folds in k-fold mode); per-model detail",
        "(window level, mean vs vote, per-class precision/recall) is in `metrics/<model>.json`.",
        f"ECE = top-label expected calibration error ({ECE_BINS} bins) of the calibrated probabilities (each model's",
        "temperature, fitted at train time: deep models on validation tracks, classical models on out-of-fold",
        "probabilities of inner cross-validation over their training tracks), ECE raw = the same before it,",
        "Brier = multiclass Brier score; all on the track-level (mean) probabilities: lower is better. Per-track predictions:",
        "`reports/predictions/<model>.csv`; `mgr compare` tests differences between commits.",
    ]
    if has_folds:
        lines += [
            "`folds` = test folds a row averages over: a model is scored on every fold it has an artifact",
            "for (classical models: refitted per fold by train-ml; deep models: `models/<name>/fold_<f>/`,",
            "one per fold, or only `train.fold` when `train.all_folds` is false).",
        ]
    lines += [
        "",
    ]
    return "\n".join(lines)


def plot_confusion_png(cm: np.ndarray, labels: Sequence[str], path: Any, title: str) -> None:
    """A confusion-matrix PNG (rows actual, columns predicted), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 1.0 + 0.5 * k), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                        color="white" if cm[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


PREDICTION_COLUMNS = ("track_id", "fold", "true", "predicted")


def prediction_rows(pairs: Sequence[tuple], probs: Any, labels: Sequence[str], fold: int | None) -> list[dict[str, Any]]:
    """Rows of ``reports/predictions/<model>.csv`` for one scored fold: ``pairs`` are
    ``(track_id, true label, predicted label)`` aligned with the rows of ``probs`` (track-level
    mean probabilities, one column per label)."""
    P = np.asarray(probs, dtype=float)
    out = []
    for j, (t, a, b) in enumerate(pairs):
        row: dict[str, Any] = {"track_id": str(t), "fold": "" if fold is None else int(fold), "true": a, "predicted": b}
        for i, lab in enumerate(labels):
            row[f"p_{lab}"] = round(float(P[j, i]), ROUND)
        out.append(row)
    return out


def write_predictions(rows: Sequence[dict[str, Any]], path: Any) -> None:
    """``track_id, fold, true, predicted, p_<label>...`` (sorted by fold, then track), the per-track
    file that ``mgr compare`` pairs across commits. Labels missing from a fold's model are 0."""
    import pandas as pd

    labels: list[str] = []
    for r in rows:
        labels += [k for k in r if k.startswith("p_") and k not in labels]
    cols = list(PREDICTION_COLUMNS) + labels
    df = pd.DataFrame(list(rows), columns=cols)
    for c in labels:
        df[c] = df[c].fillna(0.0)
    if len(df):
        df = df.sort_values(["fold", "track_id"], kind="stable", key=lambda c: c.map(
            lambda v: -1 if v == "" else int(v)) if c.name == "fold" else c.astype(str))
    df.to_csv(path, index=False, float_format="%.6g")
