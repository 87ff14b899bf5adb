"""The tempo protocol: Acc1, Acc2, MAE, per-genre Acc1 and the octave-error breakdown.

Acc1: estimate within +-4 % of the reference; Acc2 also accepts x2, x3, x1/2, x1/3: the one
definition in :mod:`mgr.evaluation.metrics` (a leaf, so ``train-tempo`` does not depend on the
genre evaluation code). The breakdown
files every estimate in exactly one class: ``correct`` (Acc1), ``x2``, ``x1/2``, ``x3``,
``x1/3`` (within +-4 % of that multiple, not Acc1), or ``other`` (incl. missing estimates).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mgr.audio.decode import load_audio
from mgr.cards import CARD_FILE
from mgr.evaluation.metrics import (
    TEMPO_TOLERANCE,
    tempo_acc1,
    tempo_acc2,
    tempo_mae,
    tempo_within,
)
from mgr.io import write_json
from mgr.tempo.estimate import LearnedTempo
from mgr.tempo.features import envelopes

OCTAVE_CLASSES = (("x2", 2.0), ("x1/2", 0.5), ("x3", 3.0), ("x1/3", 1.0 / 3.0))


#: the error kinds, in report order (an estimate that is not Acc1-correct is exactly one of them)
ERROR_KINDS = tuple(n for n, _ in OCTAVE_CLASSES) + ("other",)


def error_kinds(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE) -> np.ndarray:
    """The class of each estimate against its reference: ``correct`` (within ``tol``), else the
    first of ``x2``, ``x1/2``, ``x3``, ``x1/3`` whose multiple of the reference it is within
    ``tol`` of, else ``other`` (a missing or non-finite estimate too). References that are not
    finite and positive are left out of the result."""
    e = np.asarray(est, dtype=float).ravel()
    r = np.asarray(ref, dtype=float).ravel()
    if e.size != r.size:
        raise ValueError(f"tempo estimates and references differ in length ({e.size} vs {r.size})")
    keep = np.isfinite(r) & (r > 0)
    e, r = e[keep], r[keep]
    ok = np.isfinite(e)
    cls = np.full(r.size, "other", dtype=object)
    e0 = np.where(ok, e, 0.0)
    cls[ok & tempo_within(e0, r, tol)] = "correct"
    for name, f in OCTAVE_CLASSES:
        m = ok & (cls == "other") & tempo_within(e0, f * r, tol)
        cls[m] = name
    return cls


def error_counts(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE) -> dict[str, int]:
    """How many estimates fall in each class of :func:`error_kinds` (``correct`` and every one of
    :data:`ERROR_KINDS`, zeros included)."""
    cls = error_kinds(est, ref, tol)
    return {n: int(np.sum(cls == n)) for n in ("correct",) + ERROR_KINDS}


def octave_breakdown(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE) -> dict[str, float]:
    """Fraction of estimates in each class (they sum to 1): correct, x2, x1/2, x3, x1/3, other."""
    c = error_counts(est, ref, tol)
    total = sum(c.values())
    return {n: v / total for n, v in c.items()} if total else {}


def report(est: Any, ref: Any, genres: Sequence[str] | None = None) -> dict[str, Any]:
    """``{n, acc1, acc2, mae_bpm, octave: {...}, per_genre_acc1: {genre: acc1}}`` for one
    estimator on one set (references that are not finite and positive are left out)."""
    e = np.asarray(est, dtype=float).ravel()
    r = np.asarray(ref, dtype=float).ravel()
    keep = np.isfinite(r) & (r > 0)
    e_k = np.where(np.isfinite(e[keep]), e[keep], 0.0)  # a missing estimate is wrong, never skipped
    out: dict[str, Any] = {"n": int(keep.sum())}
    if not keep.any():
        return out
    out["acc1"] = tempo_acc1(e_k, r[keep])
    out["acc2"] = tempo_acc2(e_k, r[keep])
    out["mae_bpm"] = tempo_mae(e[keep], r[keep])  # over the tracks with an estimate
    out["octave"] = octave_breakdown(e[keep], r[keep])
    counts = error_counts(e[keep], r[keep])
    out["errors"] = {k: counts[k] for k in ERROR_KINDS}  # counts by kind (the fractions: "octave")
    if genres is not None:
        g = np.asarray(list(genres), dtype=object)[keep]
        out["per_genre_acc1"] = {str(k): tempo_acc1(e_k[g == k], r[keep][g == k]) for k in sorted(set(g.tolist()))}
    return out


def compare(estimates: dict[str, Any], ref: Any, genres: Sequence[str] | None = None) -> dict[str, Any]:
    """:func:`report` for every estimator in ``estimates`` (name -> estimates), side by side."""
    return {name: report(e, ref, genres) for name, e in estimates.items()}


def beats(a: dict, b: dict) -> bool:
    """Whether report ``a`` beats report ``b``: higher Acc1 and at least the same Acc2."""
    return bool(a.get("n") and a["acc1"] > b["acc1"] and a["acc2"] >= b["acc2"])


def table_markdown(sets: dict[str, dict[str, dict]]) -> str:
    """A markdown table: one row per (set, estimator) with n, Acc1, Acc2, MAE and the errors by
    kind, each as ``count (fraction of the set)``."""
    head = "| set | estimator | n | Acc1 | Acc2 | MAE (BPM) | " + " | ".join(ERROR_KINDS) + " |"
    lines = [head, "|" + "---|" * (6 + len(ERROR_KINDS))]
    for s, ests in sets.items():
        for name, m in ests.items():
            if not m.get("n"):
                continue
            o, c = m.get("octave", {}), m.get("errors", {})
            lines.append(f"| {s} | {name} | {m['n']} | {m['acc1']:.3f} | {m['acc2']:.3f} | {m['mae_bpm']:.1f} | "
                         + " | ".join(f"{c.get(k, round(o.get(k, 0) * m['n']))} ({o.get(k, 0):.3f})" for k in ERROR_KINDS) + " |")
    return "\n".join(lines) + "\n"


def side_by_side(paths: Any, p: Any, tracks: Any, test_ids: dict, baseline: dict, heads: dict[str, dict],
                 log: Any = print) -> dict[str, Any] | None:
    """The evaluate stage's tempo table: on the test tracks with a reference tempo, the DSP
    baseline (``baseline[fold]["estimates"]``), every model's tempo head (``heads[name]``:
    track -> BPM) and the learned estimator ``models/tempo`` (when trained) side by side
    (:func:`compare`); written to ``metrics/tempo_estimators.json``. ``None`` without tempo data."""
    from pathlib import Path

    out_path = Path(paths.metrics) / "tempo_estimators.json"
    if tracks is None or "tempo_bpm" not in tracks or not tracks["tempo_bpm"].notna().any():
        out_path.unlink(missing_ok=True)
        return None
    t = tracks.set_index(tracks["track_id"].astype(str))
    ids = sorted({str(i) for ids_f in test_ids.values() for i in ids_f
                  if str(i) in t.index and np.isfinite(float(t.at[str(i), "tempo_bpm"]))})
    if not ids:
        return None
    ref = np.array([float(t.at[i, "tempo_bpm"]) for i in ids])
    genres = [str(t.at[i, "genre"]) for i in ids]
    est: dict[str, np.ndarray] = {}
    dsp = {k: v for b in baseline.values() for k, v in b.get("estimates", {}).items()}
    if dsp:
        est["dsp"] = np.array([dsp.get(i, np.nan) for i in ids], dtype=float)
    for name, h in sorted(heads.items()):
        if h:
            est[f"{name} (tempo head)"] = np.array([h.get(i, np.nan) for i in ids], dtype=float)
    model_dir = Path(paths.models) / "tempo"
    if (model_dir / CARD_FILE).is_file():
        lt = LearnedTempo(model_dir)
        sr = p.audio.sample_rate
        vals = []
        for i in ids:
            try:
                y = load_audio(str(t.at[i, "path"]), sr=sr, offset_s=p.audio.offset_s, duration_s=p.audio.duration_s, pad=p.audio.pad)
                vals.append(float(lt.estimate([envelopes(y, sr)], sr)[0][0]))
            except Exception:  # an undecodable track counts as a miss
                vals.append(np.nan)
        est["learned (models/tempo)"] = np.array(vals)
    res = {"n": len(ids), "estimators": compare(est, ref, genres)}
    write_json(out_path, res)
    for name, m in res["estimators"].items():
        log(f"evaluate: tempo {name}: Acc1 {m['acc1']:.3f} Acc2 {m['acc2']:.3f} MAE {m['mae_bpm']:.1f} ({m['n']} tracks)")
    return res
