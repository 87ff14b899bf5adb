"""Compare two versions of the evaluate stage's per-track predictions, with statistics.

``dvc metrics diff`` says that accuracy moved from 0.62 to 0.68; on 50 test tracks that is
three tracks and may be noise. This module pairs two versions of
``reports/predictions/<model>.csv`` (written by :func:`mgr.evaluation.report.write_predictions`:
``track_id, fold, true, predicted, p_<label>...``) track by track and reports, per model:

- the change of **accuracy**, **macro-F1** and **top-3** with a **paired bootstrap** 95 %
  interval: the test tracks (paired on ``fold, track_id``) are resampled with replacement
  ``n_resamples`` times (fixed seed) and the metric difference is computed on each resample;
  the interval is its 2.5 / 97.5 percentiles;
- a p-value: **McNemar's exact test** for accuracy and top-3 (per-track hits are paired
  binary outcomes): on the discordant tracks (``b`` = hit in A only, ``c`` = hit in B only) the
  two-sided binomial p-value ``min(1, 2 P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``;
  for macro-F1 (not a per-track mean) a **paired permutation test**: each track's two
  predictions are swapped at random (``n_resamples`` times, fixed seed), p = (1 + #|Δ*| >= |Δ|)
  / (1 + n_resamples);
- a verdict per row: **significant** (p < ``alpha``), **within noise** otherwise, **no change**
  when nothing differs (identical hits / predictions). The verdict follows the test, not the
  interval: with few discordant tracks a percentile bootstrap interval can exclude 0 while an
  exact test cannot reject (4 of 4 changes in one direction: McNemar p = 0.125);
- in k-fold mode the per-fold accuracies of both versions and the std over folds (the spread
  a change should exceed);
- the per-class recall changes, and the models that only one version has.

A version is a git revision (the file read with ``git show REV:path``) or the workspace (read
from disk). The statistics are pure functions of arrays (:func:`mcnemar_exact`,
:func:`paired_bootstrap`), tested on hand-computed cases. Only NumPy and pandas are imported.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgr.errors import UserError

PREDICTIONS_DIR = "reports/predictions"
WORKSPACE = None  # a version that is the working tree
N_RESAMPLES = 2000
SEED = 0
ALPHA = 0.05
METRICS = ("accuracy", "macro_f1", "top3")


# ----------------------------------------------------------------------------- statistics
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (1.0 when none)."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return float(min(1.0, 2.0 * tail))


def accuracy_of(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred)) if len(y) else float("nan")


def macro_f1_of(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro F1 over the classes present in ``y`` or ``pred`` (a class with neither has no F1);
    the same as :func:`mgr.evaluation.metrics.macro_f1` on the classes that occur."""
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    if not present.any():
        return float("nan")
    f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return float(f1[present].mean())


def top_k_hits(y: np.ndarray, probs: np.ndarray, k: int = 3) -> np.ndarray:
    """Per row: is the true class among the ``k`` highest probabilities (ties -> lower index)."""
    if probs.size == 0:
        return np.zeros(len(y), dtype=bool)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (top == y[:, None]).any(axis=1)


@dataclass
class Interval:
    """A paired difference ``B - A``: point estimate and bootstrap percentile interval."""

    delta: float
    lo: float
    hi: float
    constant: bool = False  # the difference was the same on every resample

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)


def paired_bootstrap(
    stat: Callable[[np.ndarray], float],
    n: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap of a paired difference. ``stat(idx)`` returns ``metric_B - metric_A``
    on the tracks ``idx`` (an index array into the paired tracks, with repeats); the point
    estimate is ``stat(arange(n))``. Deterministic for a given ``seed``."""
    full = float(stat(np.arange(n)))
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    vals = np.array([stat(i) for i in idx], dtype=float)
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return Interval(full, float("nan"), float("nan"))
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [a, 1.0 - a])
    return Interval(full, float(lo), float(hi), constant=bool(np.all(vals == vals[0])))


def paired_permutation_p(
    stat: Callable[[np.ndarray], float], n: int, *, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> float:
    """Two-sided p-value of a paired difference by random swaps. ``stat(swap)`` returns
    ``metric_B - metric_A`` after exchanging the A and B predictions of the tracks where the
    boolean array ``swap`` is true; p = (1 + #{|stat(swap)| >= |stat(none)|}) / (1 + n_resamples)
    (1.0 when the observed difference is 0)."""
    obs = float(stat(np.zeros(n, dtype=bool)))
    if n == 0 or not np.isfinite(obs) or obs == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    swaps = rng.random((n_resamples, n)) < 0.5
    vals = np.array([stat(sw) for sw in swaps], dtype=float)
    hits = int(np.sum(np.abs(vals) >= abs(obs) - 1e-12))
    return float((1 + hits) / (1 + n_resamples))


# ------------------------------------------------------------------------------- reading
def read_predictions_text(text: str, name: str = "") -> Any:
    """A predictions CSV (text) as a DataFrame with string ``track_id`` / ``fold``."""
    import io

    import pandas as pd

    df = pd.read_csv(io.StringIO(text), dtype={"track_id": str, "fold": str, "true": str, "predicted": str},
                     keep_default_na=False)
    missing = {"track_id", "fold", "true", "predicted"} - set(df.columns)
    if missing:
        raise UserError(f"{name or 'predictions'}: not a predictions file (no {', '.join(sorted(missing))} column)")
    return df


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def resolve_rev(root: Path, rev: str) -> str:
    r = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if r.returncode != 0:
        raise UserError(f"compare: {rev!r} is not a git revision here")
    return r.stdout.strip()


def default_base(root: Path) -> str:
    """``main`` when the repository has it (and it is not HEAD's own commit), else ``HEAD``."""
    main = _git(root, "rev-parse", "--verify", "--quiet", "main^{commit}")
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if main.returncode == 0 and main.stdout.strip() != head.stdout.strip():
        return "main"
    return "HEAD"


def load_version(root: str | Path, rev: str | None, subdir: str = PREDICTIONS_DIR) -> dict[str, Any]:
    """``{model: DataFrame}`` of the prediction files at git revision ``rev`` (None: the workspace)."""
    root = Path(root)
    out: dict[str, Any] = {}
    if rev is None:
        d = root / subdir
        for f in sorted(d.glob("*.csv")) if d.is_dir() else []:
            out[f.stem] = read_predictions_text(f.read_text(), str(f))
        return out
    sha = resolve_rev(root, rev)
    ls = _git(root, "ls-tree", "--name-only", f"{sha}:{subdir}")
    if ls.returncode != 0:  # the revision has no predictions yet
        return out
    for name in sorted(ls.stdout.split()):
        if name.endswith(".csv"):
            r = _git(root, "show", f"{sha}:{subdir}/{name}")
            if r.returncode == 0:
                out[name[:-4]] = read_predictions_text(r.stdout, f"{rev}:{subdir}/{name}")
    return out


# ------------------------------------------------------------------------------ comparing
@dataclass
class MetricRow:
    metric: str
    a: float
    b: float
    interval: Interval
    p_value: float | None = None
    test: str = ""  # "mcnemar" | "permutation"
    verdict: str = ""


@dataclass
class ModelComparison:
    model: str
    n_paired: int
    n_only_a: int
    n_only_b: int
    rows: list[MetricRow]
    discordant: tuple[int, int] = (0, 0)  # (right in A only, right in B only)
    identical: bool = False
    per_class: list[dict[str, Any]] = field(default_factory=list)  # class, n, recall_a, recall_b, delta
    folds: dict[str, Any] | None = None  # k-fold: per-fold accuracies and std
    notes: list[str] = field(default_factory=list)


def _verdict(row: MetricRow, alpha: float, changed: bool) -> str:
    if not changed:
        return "no change"
    if row.p_value is not None:
        return "significant" if row.p_value < alpha else "within noise"
    return "significant" if row.interval.excludes_zero else "within noise"


def compare_model(
    name: str, a: Any, b: Any, *, n_resamples: int = N_RESAMPLES, seed: int = SEED, alpha: float = ALPHA
) -> ModelComparison:
    """Compare one model's predictions ``a`` (old) and ``b`` (new), paired on ``(fold, track_id)``."""
    key = ["fold", "track_id"]
    ka = set(map(tuple, a[key].to_numpy().tolist()))
    kb = set(map(tuple, b[key].to_numpy().tolist()))
    m = a.merge(b, on=key, suffixes=("_a", "_b"), how="inner").sort_values(key, kind="stable")
    notes = []
    truth_differs = m["true_a"] != m["true_b"]
    if truth_differs.any():
        notes.append(f"{int(truth_differs.sum())} paired track(s) changed their true label (dataset change): "
                     "left out")
        m = m[~truth_differs]
    labels = sorted(set(m["true_a"]) | set(m["predicted_a"]) | set(m["predicted_b"]))
    pa_cols = [c for c in a.columns if c.startswith("p_")]
    pb_cols = [c for c in b.columns if c.startswith("p_")]
    for c in pa_cols + pb_cols:
        lab = c[2:]
        if lab not in labels:
            labels.append(lab)
    pos = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    y = m["true_a"].map(pos).to_numpy(np.int64)
    pred_a = m["predicted_a"].map(pos).to_numpy(np.int64)
    pred_b = m["predicted_b"].map(pos).to_numpy(np.int64)

    def probs(cols: list[str], suffix: str) -> np.ndarray | None:
        if not cols:
            return None
        P = np.zeros((len(m), k))
        for c in cols:
            col = c + suffix if (c + suffix) in m.columns else c
            P[:, pos[c[2:]]] = m[col].to_numpy(float)
        return P

    PA, PB = probs(pa_cols, "_a"), probs(pb_cols, "_b")
    n = len(m)
    ra, rb = pred_a == y, pred_b == y
    b_only_a, c_only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
    boot = dict(n_resamples=n_resamples, seed=seed)
    rows = [MetricRow("accuracy", accuracy_of(y, pred_a), accuracy_of(y, pred_b),
                      paired_bootstrap(lambda i: rb[i].mean() - ra[i].mean(), n, **boot),
                      p_value=mcnemar_exact(b_only_a, c_only_b), test="mcnemar")]
    rows[-1].verdict = _verdict(rows[-1], alpha, bool(b_only_a or c_only_b))

    def f1_delta_swapped(sw: np.ndarray) -> float:
        return macro_f1_of(y, np.where(sw, pred_a, pred_b), k) - macro_f1_of(y, np.where(sw, pred_b, pred_a), k)

    rows.append(MetricRow("macro_f1", macro_f1_of(y, pred_a, k), macro_f1_of(y, pred_b, k), paired_bootstrap(
        lambda i: macro_f1_of(y[i], pred_b[i], k) - macro_f1_of(y[i], pred_a[i], k), n, **boot),
        p_value=paired_permutation_p(f1_delta_swapped, n, **boot), test="permutation"))
    rows[-1].verdict = _verdict(rows[-1], alpha, bool((pred_a != pred_b).any()))
    if PA is not None and PB is not None and k >= 3:
        ta, tb = top_k_hits(y, PA, 3), top_k_hits(y, PB, 3)
        tb_only_a, tc_only_b = int((ta & ~tb).sum()), int((~ta & tb).sum())
        rows.append(MetricRow("top3", float(ta.mean()) if n else float("nan"), float(tb.mean()) if n else float("nan"),
                              paired_bootstrap(lambda i: tb[i].mean() - ta[i].mean(), n, **boot),
                              p_value=mcnemar_exact(tb_only_a, tc_only_b), test="mcnemar"))
        rows[-1].verdict = _verdict(rows[-1], alpha, bool(tb_only_a or tc_only_b))
    identical = bool(len(ka ^ kb) == 0 and n == len(a) and np.array_equal(pred_a, pred_b)
                     and (PA is None or PB is None or np.array_equal(PA, PB)))

    per_class = []
    for lab, i in pos.items():
        sel = y == i
        if not sel.any():
            continue
        rec_a, rec_b = float(ra[sel].mean()), float(rb[sel].mean())
        if rec_a != rec_b:
            per_class.append({"class": lab, "n": int(sel.sum()), "recall_a": rec_a, "recall_b": rec_b,
                              "delta": rec_b - rec_a})

    folds = None
    fvals = sorted(set(m["fold"]) - {""}, key=int)
    if len(fvals) > 1:
        acc_a = {f: float(ra[(m["fold"] == f).to_numpy()].mean()) for f in fvals}
        acc_b = {f: float(rb[(m["fold"] == f).to_numpy()].mean()) for f in fvals}
        folds = {"accuracy_a": acc_a, "accuracy_b": acc_b,
                 "std_a": float(np.std(list(acc_a.values()))), "std_b": float(np.std(list(acc_b.values()))),
                 "delta_std": float(np.std([acc_b[f] - acc_a[f] for f in fvals]))}
    return ModelComparison(name, n, len(ka - kb), len(kb - ka), rows, (b_only_a, c_only_b), identical,
                           per_class, folds, notes)


@dataclass
class Comparison:
    a: str
    b: str
    models: list[ModelComparison]
    added: list[str]
    removed: list[str]
    n_resamples: int = N_RESAMPLES
    seed: int = SEED
    alpha: float = ALPHA


def compare_versions(
    va: dict[str, Any], vb: dict[str, Any], *, a: str = "A", b: str = "B", n_resamples: int = N_RESAMPLES,
    seed: int = SEED, alpha: float = ALPHA,
) -> Comparison:
    """Compare every model both versions have; list the ones only one has."""
    common = sorted(set(va) & set(vb))
    models = [compare_model(n, va[n], vb[n], n_resamples=n_resamples, seed=seed, alpha=alpha) for n in common]
    return Comparison(a, b, models, sorted(set(vb) - set(va)), sorted(set(va) - set(vb)), n_resamples, seed, alpha)


def compare(root: str | Path = ".", a: str | None = None, b: str | None = WORKSPACE, *,
            n_resamples: int = N_RESAMPLES, seed: int = SEED, alpha: float = ALPHA) -> Comparison:
    """Revision ``a`` (default: ``main``, or ``HEAD`` on main itself) against ``b`` (default: the
    workspace; a revision otherwise)."""
    root = Path(root)
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        raise UserError(f"compare: {root.resolve()} is not inside a git repository")
    a = a or default_base(root)
    va = load_version(root, a)
    vb = load_version(root, b)
    if not va and not vb:
        raise UserError(f"compare: no {PREDICTIONS_DIR}/*.csv in {a} nor in "
                        f"{'the workspace' if b is None else b} (run the evaluate stage: dvc repro evaluate)")
    return compare_versions(va, vb, a=a, b="workspace" if b is None else b, n_resamples=n_resamples,
                            seed=seed, alpha=alpha)


# ------------------------------------------------------------------------------ rendering
def _f(x: float | None, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _p(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.3g}" if x >= 0.001 else "<0.001"


def _table_rows(c: Comparison) -> list[list[str]]:
    out = []
    for mc in c.models:
        if mc.identical:
            out.append([mc.model, "all", "", "", "±0", "", "", f"no change ({mc.n_paired} tracks identical)"])
            continue
        for r in mc.rows:
            iv = r.interval
            ci = f"[{_f(iv.lo, True)}, {_f(iv.hi, True)}]"
            out.append([mc.model, r.metric, _f(r.a), _f(r.b), _f(iv.delta, True), ci, _p(r.p_value), r.verdict])
    return out


HEAD = ["model", "metric", "A", "B", "Δ (B−A)", "95 % CI", "p", "verdict"]


def to_dict(c: Comparison) -> dict[str, Any]:
    """A JSON-able form (``mgr compare --format json``)."""
    import dataclasses

    return dataclasses.asdict(c)


def _explain(c: Comparison) -> str:
    return (f"Paired over the test tracks both versions scored: 95 % paired bootstrap interval of B − A "
            f"({c.n_resamples} resamples, seed {c.seed}); p: McNemar's exact test (accuracy, top-3), paired "
            f"permutation test (macro-F1); significant: p < {c.alpha:g}.")


def _extras(c: Comparison, md: bool) -> list[str]:
    lines: list[str] = []
    code = (lambda s: f"`{s}`") if md else (lambda s: s)
    for mc in c.models:
        bits = []
        if not mc.identical and mc.n_paired:
            bits.append(f"{mc.n_paired} paired tracks; right in A only {mc.discordant[0]}, in B only {mc.discordant[1]}")
        if mc.n_only_a or mc.n_only_b:
            bits.append(f"unpaired: {mc.n_only_a} only in A, {mc.n_only_b} only in B")
        if mc.folds and not mc.identical:
            fa = ", ".join(_f(v) for v in mc.folds["accuracy_a"].values())
            fb = ", ".join(_f(v) for v in mc.folds["accuracy_b"].values())
            bits.append(f"per-fold accuracy A [{fa}] (std {_f(mc.folds['std_a'])}), B [{fb}] "
                        f"(std {_f(mc.folds['std_b'])}); std of the per-fold Δ {_f(mc.folds['delta_std'])}")
        bits += mc.notes
        if bits:
            lines.append(f"- {code(mc.model)}: " + "; ".join(bits))
        if mc.per_class and not mc.identical:
            pcs = ", ".join(f"{p['class']} {_f(p['recall_a'])}→{_f(p['recall_b'])} (n={p['n']})" for p in mc.per_class)
            lines.append(f"  - recall per class: {pcs}")
    if c.added:
        lines.append("- models only in B (added): " + ", ".join(code(m) for m in c.added))
    if c.removed:
        lines.append("- models only in A (removed): " + ", ".join(code(m) for m in c.removed))
    return lines


def to_markdown(c: Comparison) -> str:
    lines = [f"### Model comparison: `{c.a}` (A) → `{c.b}` (B)", "", _explain(c), ""]
    rows = _table_rows(c)
    if rows:
        lines += ["| " + " | ".join(HEAD) + " |", "|" + "|".join(["---"] * len(HEAD)) + "|"]
        for r in rows:
            r = list(r)
            if r[-1] == "significant":
                r[-1] = "**significant**"
            lines.append("| " + " | ".join(r) + " |")
    else:
        lines.append("No model in both versions.")
    ex = _extras(c, md=True)
    if ex:
        lines += [""] + ex
    return "\n".join(lines) + "\n"


def to_text(c: Comparison) -> str:
    rows = _table_rows(c)
    lines = [f"compare: {c.a} (A) -> {c.b} (B)", _explain(c), ""]
    if rows:
        w = [max(len(str(x)) for x in col) for col in zip(HEAD, *rows)]
        fmt = lambda r: "  ".join(str(x).ljust(w[i]) for i, x in enumerate(r)).rstrip()  # noqa: E731
        lines += [fmt(HEAD), fmt(["-" * x for x in w])] + [fmt(r) for r in rows]
    else:
        lines.append("no model in both versions")
    ex = _extras(c, md=False)
    if ex:
        lines += [""] + ex
    return "\n".join(lines) + "\n"


def render(c: Comparison, fmt: str = "text") -> str:
    if fmt == "md":
        return to_markdown(c)
    if fmt == "json":
        import json

        return json.dumps(to_dict(c), indent=2, default=float) + "\n"
    if fmt == "text":
        return to_text(c)
    raise UserError(f"compare: unknown format {fmt!r} (text | md | json)")


__all__: Sequence[str] = ["mcnemar_exact", "paired_bootstrap", "compare", "compare_versions", "compare_model", "render"]
