"""mgr.evaluation.compare: the statistics on hand-computed cases, the pairing, reading versions from git,
and the `mgr compare` command (the end-to-end case on a tiny DVC project is in test_pipeline.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mgr.errors import UserError
from mgr.evaluation import compare as C

LABELS = ["blues", "jazz", "metal", "rock"]


# ------------------------------------------------------------------------------ McNemar
def test_mcnemar_exact_hand_computed():
    # b=1, c=9: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11/1024
    assert C.mcnemar_exact(1, 9) == pytest.approx(0.021484375, abs=1e-12)
    assert round(C.mcnemar_exact(9, 1), 5) == 0.02148  # symmetric
    assert C.mcnemar_exact(0, 4) == pytest.approx(0.125)  # 2 / 16
    assert C.mcnemar_exact(0, 0) == 1.0 and C.mcnemar_exact(3, 3) == 1.0  # capped at 1
    assert C.mcnemar_exact(2, 7) == pytest.approx(2 * sum(comb(9, i) for i in range(3)) / 2**9)
    with pytest.raises(ValueError):
        C.mcnemar_exact(-1, 2)


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_of_identical_predictions_is_zero():
    y = np.array([0, 1, 2, 0, 1, 2])
    p = np.array([0, 1, 1, 0, 2, 2])
    iv = C.paired_bootstrap(lambda i: np.mean(p[i] == y[i]) - np.mean(p[i] == y[i]), len(y))
    assert (iv.delta, iv.lo, iv.hi) == (0.0, 0.0, 0.0) and iv.constant and not iv.excludes_zero


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    a = rng.random(60) < 0.6
    b = a.copy()
    b[:12] = True  # B gets up to 12 more tracks right
    stat = lambda i: b[i].mean() - a[i].mean()  # noqa: E731
    one, two = C.paired_bootstrap(stat, 60, seed=7), C.paired_bootstrap(stat, 60, seed=7)
    assert one == two
    assert one.lo <= one.delta <= one.hi and one.delta == pytest.approx(b.mean() - a.mean())
    assert one.lo >= 0  # B is never worse on any track


def test_permutation_p_is_one_without_a_difference_and_small_for_a_large_one():
    y = np.zeros(40, dtype=np.int64)
    pa, pb = np.ones(40, dtype=np.int64), np.zeros(40, dtype=np.int64)
    same = C.paired_permutation_p(lambda sw: 0.0, 40)
    assert same == 1.0
    stat = lambda sw: np.mean(np.where(sw, pa, pb) == y) - np.mean(np.where(sw, pb, pa) == y)  # noqa: E731
    assert C.paired_permutation_p(stat, 40, n_resamples=500) == pytest.approx(1 / 501)


def test_macro_f1_matches_the_evaluation_module():
    from mgr.evaluation.metrics import macro_f1

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 80), rng.integers(0, 5, 80)
    p[p == 4] = 3  # a class never predicted
    assert C.macro_f1_of(y, p, 5) == pytest.approx(macro_f1(y, p, 5))


# ------------------------------------------------------------------------------ pairing
def _preds(pred: list[str], true: list[str] | None = None, fold: str = "", seed: int = 0, ids=None) -> pd.DataFrame:
    n = len(pred)
    true = true or [LABELS[i % 4] for i in range(n)]
    df = pd.DataFrame({"track_id": ids or [f"t{i:03d}" for i in range(n)], "fold": [fold] * n, "true": true,
                       "predicted": pred})
    P = np.random.default_rng(seed).random((n, 4))
    for j, lab in enumerate(LABELS):
        df[f"p_{lab}"] = np.round(P[:, j], 6)
    return df


def test_identical_models_show_no_change_and_added_removed_are_listed():
    a = _preds([LABELS[(i * 7) % 4] for i in range(40)])
    c = C.compare_versions({"m": a, "old": a}, {"m": a.copy(), "new": a}, a="main", b="workspace")
    (mc,) = c.models
    assert mc.identical and mc.n_paired == 40 and mc.discordant == (0, 0)
    assert [r.verdict for r in mc.rows] == ["no change"] * 3
    assert all((r.interval.lo, r.interval.hi) == (0.0, 0.0) for r in mc.rows)
    assert mc.rows[0].p_value == 1.0
    assert c.added == ["new"] and c.removed == ["old"]
    md = C.render(c, "md")
    assert "| m | all |" in md and "no change (40 tracks identical)" in md
    assert "added): `new`" in md and "removed): `old`" in md


def test_changed_model_rows_pairing_and_per_class_recall():
    true = [LABELS[i % 4] for i in range(50)]
    a_pred = [true[i] if i % 2 else LABELS[(i + 1) % 4] for i in range(50)]  # 25 right
    b_pred = list(a_pred)
    for i in range(0, 20, 2):  # B fixes 10 tracks, 9 of class blues/metal (even i)
        b_pred[i] = true[i]
    b_pred[1] = LABELS[2]  # and breaks one (jazz)
    a = _preds(a_pred, true)
    b = _preds(b_pred, true, seed=1).iloc[::-1]  # row order does not matter: paired on (fold, track_id)
    mc = C.compare_model("m", a, b)
    assert mc.discordant == (1, 10)
    acc = mc.rows[0]
    assert acc.metric == "accuracy" and acc.a == pytest.approx(0.5) and acc.b == pytest.approx(34 / 50)
    assert acc.p_value == pytest.approx(C.mcnemar_exact(1, 10))
    assert acc.verdict == "significant" and acc.interval.lo > 0
    assert [r.metric for r in mc.rows] == ["accuracy", "macro_f1", "top3"]
    recall = {p["class"]: p for p in mc.per_class}
    assert recall["jazz"]["delta"] == pytest.approx(-1 / 13)
    assert recall["blues"]["recall_b"] > recall["blues"]["recall_a"]


def test_small_change_is_within_noise():
    true = [LABELS[i % 4] for i in range(50)]
    a_pred = [true[i] if i % 3 else LABELS[(i + 1) % 4] for i in range(50)]
    b_pred = list(a_pred)
    b_pred[0], b_pred[3], b_pred[6] = true[0], true[3], true[6]  # +3 tracks: +0.06 on 50
    mc = C.compare_model("m", _preds(a_pred, true), _preds(b_pred, true))
    acc = mc.rows[0]
    assert acc.interval.delta == pytest.approx(0.06) and acc.p_value == pytest.approx(0.25)
    assert acc.verdict == "within noise"


def test_unpaired_tracks_and_kfold_spread():
    true = [LABELS[i % 4] for i in range(40)]
    ids = [f"t{i:03d}" for i in range(40)]
    fa = pd.concat([_preds(true[:20], true[:20], fold="0", ids=ids[:20]),
                    _preds([LABELS[0]] * 20, true[20:], fold="1", ids=ids[20:])])
    fb = fa.copy()
    fb.loc[fb["fold"] == "1", "predicted"] = true[20:]
    fb = fb.iloc[:-2]  # two tracks only in A
    mc = C.compare_model("m", fa, fb)
    assert (mc.n_paired, mc.n_only_a, mc.n_only_b) == (38, 2, 0)
    assert mc.folds["accuracy_a"]["0"] == 1.0 and mc.folds["accuracy_b"]["1"] == 1.0
    assert mc.folds["std_a"] > 0
    assert "per-fold accuracy" in C.render(C.Comparison("a", "b", [mc], [], []), "text")


# ---------------------------------------------------------------------------- git + CLI
def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    d = tmp_path / "repo"
    (d / C.PREDICTIONS_DIR).mkdir(parents=True)
    _git(d, "init", "-q", "-b", "main")
    true = [LABELS[i % 4] for i in range(40)]
    _preds(true, true).to_csv(d / C.PREDICTIONS_DIR / "svm.csv", index=False)
    _preds([LABELS[0]] * 40, true).to_csv(d / C.PREDICTIONS_DIR / "cnn2d.csv", index=False)
    _git(d, "add", "-A")
    _git(d, "commit", "-qm", "base")
    _git(d, "checkout", "-q", "-b", "feature")
    _preds(true, true).to_csv(d / C.PREDICTIONS_DIR / "cnn2d.csv", index=False)  # cnn2d: all right now
    (d / C.PREDICTIONS_DIR / "svm.csv").unlink()
    _preds(true, true).to_csv(d / C.PREDICTIONS_DIR / "xgboost.csv", index=False)
    return d


def test_compare_reads_git_revisions_and_the_workspace(repo: Path):
    c = C.compare(repo)  # default: main (HEAD is the feature branch's commit = main here -> HEAD)
    assert c.a == "HEAD" and c.b == "workspace"
    assert [m.model for m in c.models] == ["cnn2d"] and c.added == ["xgboost"] and c.removed == ["svm"]
    assert c.models[0].rows[0].verdict == "significant"
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "feature")
    c2 = C.compare(repo)  # now main != HEAD: main is the default base
    assert c2.a == "main" and c2.models[0].rows[0].b == 1.0
    c3 = C.compare(repo, "main", "feature")
    assert C.to_dict(c3)["models"] == C.to_dict(c2)["models"]
    with pytest.raises(UserError, match="not a git revision"):
        C.compare(repo, "no-such-branch")


def test_mgr_compare_command_formats(repo: Path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))
    run = lambda *a: subprocess.run([sys.executable, "-c", "from mgr.cli import main; main()", "compare", *a],  # noqa: E731
                                    cwd=repo, capture_output=True, text=True, env=env)
    text = run()
    assert text.returncode == 0, text.stderr
    assert "cnn2d" in text.stdout and "significant" in text.stdout and "xgboost" in text.stdout
    md = run("main", "--format", "md")
    assert md.stdout.startswith("### Model comparison: `main` (A) → `workspace` (B)")
    assert "| cnn2d | accuracy | 0.250 | 1.000 | +0.750 |" in md.stdout and "**significant**" in md.stdout
    js = json.loads(run("--format", "json", "--resamples", "200").stdout)
    assert js["n_resamples"] == 200 and js["models"][0]["model"] == "cnn2d"
    bad = run("nope")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "not a git revision" in bad.stderr
