"""Metric functions against hand-computed cases (mgr.evaluation.metrics), the evaluate protocol
(mgr.evaluation.scoring) and its reports (mgr.evaluation.report)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _eval_helpers import eval_paths

from mgr.evaluation import calibration as CAL
from mgr.evaluation import metrics as M
from mgr.evaluation import report as R
from mgr.evaluation import scoring as S

# y_true / y_pred used by several tests (3 classes)
T = [0, 0, 0, 1, 1, 2]
P = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_rows_actual_cols_predicted():
    cm = M.confusion_matrix(T, P, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a class that never occurs still gets a row/column when n_classes says so
    assert M.confusion_matrix([0], [0], 2).tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError):
        M.confusion_matrix([3], [0], 2)


def test_accuracy_balanced_accuracy_f1_by_hand():
    assert M.accuracy(T, P) == pytest.approx(4 / 6)
    # recalls: 2/3, 1/2, 1/1
    assert M.balanced_accuracy(T, P, 3) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    pr = M.per_class_precision_recall(T, P, 3)
    # precisions: 2/2, 1/2, 1/2
    assert pr["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert pr["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert pr["support"].tolist() == [3, 2, 1]
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    assert pr["f1"].tolist() == pytest.approx(f1)
    assert M.macro_f1(T, P, 3) == pytest.approx(sum(f1) / 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_macro_averages_skip_absent_classes_like_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, 50)
    p = np.where(rng.random(50) < 0.6, t, rng.integers(0, 5, 50))
    t[t == 4] = 3  # class 4 absent from y_true, maybe present in y_pred
    assert M.balanced_accuracy(t, p, 6) == pytest.approx(balanced_accuracy_score(t, p))
    assert M.macro_f1(t, p, 6) == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    # zero division -> 0, never NaN
    pr = M.per_class_precision_recall([0, 0], [1, 1], 2)
    assert pr["precision"].tolist() == [0.0, 0.0] and pr["recall"].tolist() == [0.0, 0.0]


def test_top_k_accuracy_by_hand_with_ties_to_lower_index():
    scores = np.array(
        [
            [0.5, 0.3, 0.2, 0.0],  # true 2: rank 3
            [0.1, 0.2, 0.3, 0.4],  # true 0: rank 4
            [0.25, 0.25, 0.25, 0.25],  # all tied: ranking 0,1,2,3 -> true 3 is 4th
            [0.25, 0.25, 0.25, 0.25],  # true 2 is 3rd
        ]
    )
    y = [2, 0, 3, 2]
    assert M.top_k_accuracy(y, scores, 1) == 0.0
    assert M.top_k_accuracy(y, scores, 2) == 0.0
    assert M.top_k_accuracy(y, scores, 3) == pytest.approx(2 / 4)
    assert M.top_k_accuracy(y, scores, 4) == 1.0


def test_classification_metrics_bundle():
    scores = np.eye(3)[P] * 0.8 + 0.1
    m = M.classification_metrics(T, scores, ["a", "b", "c"])
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["top3"] == 1.0
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


# ------------------------------------------------------------------- aggregation
def test_mean_aggregation_differs_from_vote():
    # track 7: two weak votes for class 1, one confident window for class 0
    w = np.array([[0.45, 0.55], [0.45, 0.55], [1.0, 0.0], [0.2, 0.8]])
    tid = np.array([7, 7, 7, 3])
    tracks, scores, pred = M.aggregate_tracks(w, tid, "mean")
    assert tracks.tolist() == [3, 7]
    assert scores[1] == pytest.approx([1.9 / 3, 1.1 / 3])
    assert pred.tolist() == [1, 0]
    tracks, scores, pred = M.aggregate_tracks(w, tid, "vote")
    assert pred.tolist() == [1, 1]  # vote: 2 windows for class 1 beat 1 for class 0
    with pytest.raises(ValueError):
        M.aggregate_tracks(w, tid, "median")


def test_vote_tie_broken_by_higher_mean_probability():
    # one vote each for class 0 and class 2; mean prob of class 2 is higher -> 2 wins
    w = np.array([[0.40, 0.30, 0.30], [0.00, 0.10, 0.90]])
    pred, scores = M.vote(w)
    assert pred == 2
    # the score row ranks by (votes, mean): 2 > 0 > 1
    assert np.argsort(-scores, kind="stable").tolist() == [2, 0, 1]


def test_vote_tie_in_votes_and_mean_goes_to_lower_index():
    w = np.array([[0.0, 0.6, 0.4], [0.0, 0.4, 0.6]])  # one vote each for 1 and 2, equal means
    pred, scores = M.vote(w)
    assert pred == 1
    # equal scores rank the lower index first (stable sort), like argmax
    assert scores[1] == scores[2] > scores[0]
    assert np.argsort(-scores, kind="stable").tolist() == [1, 2, 0]


def test_vote_more_votes_beat_higher_mean():
    w = np.array([[0.51, 0.49], [0.51, 0.49], [0.0, 1.0]])  # class 0: 2 votes, mean .34; class 1: mean .66
    pred, scores = M.vote(w)
    assert pred == 0 and scores[0] > scores[1]
    _, agg_scores, agg_pred = M.aggregate_tracks(w, ["x", "x", "x"], "vote")
    assert agg_pred.tolist() == [0] and agg_scores[0] == pytest.approx(scores)


# ------------------------------------------------------------------------- tempo
def test_tempo_acc1_exactly_at_the_4_percent_boundary():
    # 4 % of 100 BPM = 4 BPM; 4 % of 125 = 5; boundary is inside, just beyond is outside
    assert M.tempo_acc1([104.0], [100.0]) == 1.0
    assert M.tempo_acc1([96.0], [100.0]) == 1.0
    assert M.tempo_acc1([130.0], [125.0]) == 1.0
    assert M.tempo_acc1([104.01], [100.0]) == 0.0
    assert M.tempo_acc1([95.99], [100.0]) == 0.0
    assert M.tempo_acc1([124.8], [120.0]) == 1.0  # 4.8 BPM, not exact in binary floating point
    assert M.tempo_acc1([124.81], [120.0]) == 0.0


def test_tempo_acc2_octave_and_third_errors_at_the_boundary():
    ref = 100.0
    # x2: tolerance is 4 % of 200 = 8 BPM; x1/2: 2 BPM; x3: 12 BPM; x1/3: 4/3 BPM
    cases = {208.0: 1, 208.1: 0, 52.0: 1, 52.1: 0, 312.0: 1, 312.1: 0, 100 / 3 + 4 / 3: 1, 100 / 3 + 1.4: 0, 150.0: 0}
    for est, ok in cases.items():
        assert M.tempo_acc2([est], [ref]) == ok, est
        assert M.tempo_acc1([est], [ref]) == 0.0, est
    assert M.tempo_acc2([104.0], [ref]) == 1.0  # Acc1 implies Acc2


def test_tempo_metrics_counts_missing_and_mae():
    est = [100.0, 200.0, np.nan, 90.0]
    ref = [100.0, 100.0, 120.0, np.nan]
    m = M.tempo_metrics(est, ref)
    assert m["n"] == 3 and m["n_no_reference"] == 1 and m["n_no_estimate"] == 1
    assert m["acc1"] == pytest.approx(1 / 3)  # the missing estimate counts as wrong
    assert m["acc2"] == pytest.approx(2 / 3)
    assert m["mae_bpm"] == pytest.approx((0 + 100) / 2)
    assert math.isnan(M.tempo_acc1([1.0], [np.nan]))


def test_roc_and_pr_match_sklearn_on_random_data():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # rounded -> many ties
    assert M.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_tag_metrics_skips_single_class_tags_and_says_so():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.7, 0.3, 0.5], [0.1, 0.4, 0.5]])
    m = M.tag_metrics(y, s, ["rock", "never", "always"])
    assert m["tags_skipped"] == ["never", "always"]
    assert m["n_tags_used"] == 1
    assert m["roc_auc"] == pytest.approx(0.75) and m["pr_auc"] == pytest.approx(0.5 + 1 / 3)
    m = M.tag_metrics(y[:, 1:], s[:, 1:])
    assert m["n_tags_used"] == 0 and math.isnan(m["roc_auc"])


def test_mean_std():
    assert M.mean_std([0.5, 0.7, float("nan")]) == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "n": 2}
    assert M.mean_std([])["n"] == 0


# ================================================================ the evaluate stage
class FakeStore:
    """The SpectrogramStore reader API over in-memory arrays (10 frames per second).

    Row 0 of a track's spectrogram holds the genre class the fake model will predict for a
    frame, row 1 the tempo class, row 2 a tag score.
    """

    def __init__(self, specs, genre_idx, labels, tempo_bpm=None, tags=None, tag_vocab=()):
        self.specs = [np.asarray(s, dtype=np.float32) for s in specs]
        self.track_ids = np.array([f"t{i}" for i in range(len(specs))], dtype=object)
        self.genre_idx = np.asarray(genre_idx)
        self.labels = list(labels)
        self.frontend = {"sr": 1000, "hop": 100, "n_mels": 3}
        self.tempo_bpm = np.full(len(specs), np.nan) if tempo_bpm is None else np.asarray(tempo_bpm, float)
        self.tag_vocab = list(tag_vocab)
        self.tags = np.zeros((len(specs), 0), np.uint8) if tags is None else np.asarray(tags, np.uint8)
        self.n_mels = 3

    def frames_for_seconds(self, s):
        return max(1, int(round(s * 10)))

    def track(self, i):
        return self.specs[i]

    def track_windows(self, i, w, overlap=0.5):
        spec = self.specs[i]
        n = spec.shape[1]
        if n < w:
            X = np.full((1, 3, w), -80.0, np.float32)
            X[0, :, :n] = spec
            return X
        hop = max(1, int(round(w * (1 - overlap))))
        starts = list(range(0, n - w + 1, hop))
        if starts[-1] + w < n:
            starts.append(n - w)
        return np.stack([spec[:, s : s + w] for s in starts])


class FakeDeep:
    """A deep artifact whose genre output is the one-hot of a window's mean row-0 value."""

    def __init__(self, labels, window_frames, frontend, tempo_centres=(), tag_vocab=()):
        self.name = "fake"
        self.labels = list(labels)
        self.window_frames = window_frames
        self.frontend = dict(frontend)
        self.tempo_centres = list(tempo_centres)
        self.tag_vocab = list(tag_vocab)
        edges = [c - 5 for c in tempo_centres] + [tempo_centres[-1] + 5] if tempo_centres else []
        self.card = {"tempo_bins": {"kind": "10bpm", "centres": list(tempo_centres), "edges": edges}}
        self.seen = []

    temperature = 1.0

    def calibrate(self, p):
        return CAL.apply_temperature(p, self.temperature)

    def predict_windows(self, X, calibrated=True):
        X = np.asarray(X)
        assert X.shape[1:] == (3, self.window_frames)
        self.seen.append(len(X))
        k = len(self.labels)
        g = np.clip(np.rint(X[:, 0, :].mean(axis=1)).astype(int), 0, k - 1)
        out = {"genre": np.eye(k)[g] * 0.9 + 0.1 / k}
        if self.tempo_centres:
            t = np.clip(np.rint(X[:, 1, :].mean(axis=1)).astype(int), 0, len(self.tempo_centres) - 1)
            out["tempo"] = np.eye(len(self.tempo_centres))[t]
        if self.tag_vocab:
            out["tags"] = np.repeat(X[:, 2, :].mean(axis=1, keepdims=True), len(self.tag_vocab), axis=1)
        if calibrated:
            out["genre"] = self.calibrate(out["genre"])
        return out


def _spec(genre_frames, tempo=0, tag=0.0):
    g = np.asarray(genre_frames, dtype=np.float32)
    return np.stack([g, np.full_like(g, tempo), np.full_like(g, tag)])


def test_evaluate_deep_windows_mean_vote_and_skipped():
    labels = ["a", "b", "c"]
    specs = [
        _spec([0] * 10),  # t0: all windows say a (truth a)
        _spec([1] * 6 + [2] * 4),  # t1 (truth b): windows b, b, b/c-mix, c
        _spec([2] * 10),  # t2 (truth a): wrong
    ]
    store = FakeStore(specs, [0, 1, 0], labels)
    art = FakeDeep(labels, 4, store.frontend)
    res = S.evaluate_deep(art, store, ["t0", "t1", "t2", "gone"], window_s=0.4, overlap=0.5)
    assert res["n_tracks"] == 4 and res["n_skipped"] == 1 and "gone" in res["skipped"]
    assert res["window"]["n_windows"] == 12  # 4 windows (starts 0, 2, 4, 6) x 3 tracks
    # t1 windows: [1,1,1,1]->b, [1,1,1,1]->b, [1,1,2,2]->1.5 rounds to 2 (c), [2,2,2,2]->c
    assert res["window"]["accuracy"] == pytest.approx((4 + 2 + 0) / 12)
    assert res["track_mean"]["accuracy"] == pytest.approx(2 / 3)
    # vote on t1: b 2 votes, c 2 votes; mean prob equal -> lower index (b) wins
    assert res["track_vote"]["accuracy"] == pytest.approx(2 / 3)
    assert res["protocol"]["segment_frames"] == 4 and res["protocol"]["model_window_frames"] == 4
    assert "tempo" not in res and "tags" not in res


def test_evaluate_deep_reports_calibration_before_and_after_the_temperature():
    """The card's temperature changes the probabilities evaluate scores (ECE, Brier) but not the
    ranking; the raw network's calibration is reported next to it (issue: honest confidence)."""
    labels = ["a", "b", "c"]
    store = FakeStore([_spec([0] * 10), _spec([1] * 10), _spec([2] * 10), _spec([0] * 10)], [0, 1, 0, 0], labels)
    plain = FakeDeep(labels, 4, store.frontend)
    hot = FakeDeep(labels, 4, store.frontend)
    hot.temperature = 3.0  # softer probabilities
    a = S.evaluate_deep(plain, store, ["t0", "t1", "t2", "t3"], window_s=0.4, overlap=0.5)["track_mean"]
    b = S.evaluate_deep(hot, store, ["t0", "t1", "t2", "t3"], window_s=0.4, overlap=0.5)["track_mean"]
    assert a["accuracy"] == b["accuracy"] == pytest.approx(0.75)  # ranking unchanged
    assert a["ece"] == pytest.approx(a["ece_uncalibrated"])  # T = 1: nothing to calibrate
    assert b["ece_uncalibrated"] == pytest.approx(a["ece"]) and b["brier_uncalibrated"] == pytest.approx(a["brier"])
    assert b["ece"] != pytest.approx(b["ece_uncalibrated"]) and b["brier"] != pytest.approx(b["brier_uncalibrated"])


def test_evaluate_deep_tiles_long_segments_with_model_windows():
    labels = ["a", "b"]
    store = FakeStore([_spec([1] * 10)], [1], labels)
    art = FakeDeep(labels, 4, store.frontend)
    # 0.8 s segments = 8 frames over a 10-frame track: starts 0, 2 -> 2 segments;
    # each tiled by 4-frame model windows at 0, 2, 4 -> 6 model windows, 2 segment rows
    res = S.evaluate_deep(art, store, ["t0"], window_s=0.8, overlap=0.5)
    assert sum(art.seen) == 6
    assert res["window"]["n_windows"] == 2
    assert res["protocol"]["segment_frames"] == 8
    # a segment shorter than the model window falls back to the model window
    res = S.evaluate_deep(FakeDeep(labels, 4, store.frontend), store, ["t0"], window_s=0.2, overlap=0.5)
    assert res["protocol"]["segment_frames"] == 4 and res["window"]["n_windows"] == 4


def test_evaluate_deep_tempo_and_tags():
    labels = ["a", "b"]
    centres = [95.0, 105.0, 115.0]
    specs = [_spec([0] * 8, tempo=0, tag=0.9), _spec([1] * 8, tempo=2, tag=0.2), _spec([1] * 8, tempo=1, tag=0.6)]
    tags = [[1], [0], [1]]
    store = FakeStore(specs, [0, 1, 1], labels, tempo_bpm=[96.0, 100.0, np.nan], tags=tags, tag_vocab=["x"])
    art = FakeDeep(labels, 4, store.frontend, tempo_centres=centres, tag_vocab=["x"])
    res = S.evaluate_deep(art, store, ["t0", "t1", "t2"], window_s=0.4, overlap=0.5)
    t = res["tempo"]
    # t0: 95 vs 96 within 4 %; t1: 115 vs 100 is not (nor x2 etc.); t2 has no reference
    assert t["n"] == 2 and t["n_no_reference"] == 1
    assert t["acc1"] == pytest.approx(0.5) and t["acc2"] == pytest.approx(0.5)
    assert t["mae_bpm"] == pytest.approx((1 + 15) / 2)
    assert t["class_accuracy"] == pytest.approx(0.5)  # 96 -> bin 0 (ok), 100 -> bin 0 (predicted 2)
    assert res["tags"]["roc_auc"] == pytest.approx(1.0) and res["tags"]["n_tags_used"] == 1
    assert res["tags"]["f1_at_threshold"] == pytest.approx(1.0)


def test_evaluate_deep_refuses_a_foreign_front_end_or_labels():
    from mgr.errors import ArtifactError

    store = FakeStore([_spec([0] * 8)], [0], ["a", "b"])
    with pytest.raises(ArtifactError, match="front end"):
        S.evaluate_deep(FakeDeep(["a", "b"], 4, {**store.frontend, "hop": 50}), store, ["t0"], window_s=0.4, overlap=0.5)
    with pytest.raises(ArtifactError, match="lack"):
        S.evaluate_deep(FakeDeep(["a", "z"], 4, store.frontend), store, ["t0"], window_s=0.4, overlap=0.5)


def test_leaderboard_is_sorted_best_first():
    s = {
        "m1": {"accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.4, "top3": 0.9, "n_tracks": 10, "n_skipped": 0},
        "m2": {"accuracy": 0.7, "balanced_accuracy": 0.7, "macro_f1": 0.6, "top3": 1.0, "n_tracks": 10, "n_skipped": 1},
        "m3": {"accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.45, "top3": 0.9, "n_tracks": 10, "n_skipped": 0,
               "tempo_acc1": 0.3, "tempo_acc2": 0.6},
    }
    md = R.leaderboard_markdown(s, {"m1": "classical", "m2": "classical", "m3": "deep"}, protocol="p", missing=["m9"])
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert [r.split(" | ")[1] for r in rows] == ["m2", "m3", "m1"]  # ties on accuracy -> macro-F1
    assert "10 (1)" in rows[0] and "0.300" in rows[1] and "`m9`" in md


def _classical_project(root, folds=None, models=("logreg", "random_forest")):
    """A project dir with split.csv, features.parquet, trained classical artifacts and their
    train-ml metrics (the real train-ml code on a tiny generated table)."""
    import pandas as pd

    from mgr.io import write_json
    from mgr.models import classical as C
    from mgr.models import classical_artifact
    from mgr.params import params_from_dict

    rng = np.random.default_rng(0)
    genres = ["blues", "jazz", "metal"]
    y = np.repeat(np.arange(3), 20)
    X = rng.normal(scale=2.0, size=(3, 6))[y] + rng.normal(size=(60, 6))
    df = pd.DataFrame(X, columns=[f"mfcc{i + 1}_mean" for i in range(6)])
    order = rng.permutation(60)
    split = np.array(["train"] * 60, dtype=object)
    split[order[:15]] = "test"
    split[order[15:24]] = "val"
    df.insert(0, "track_id", [f"{genres[g]}.{i:05d}" for i, g in enumerate(y)])
    df.insert(1, "split", split)
    df.insert(2, "genre", [genres[g] for g in y])
    if folds:
        fold = np.empty(60, dtype=np.int64)
        fold[order] = np.arange(60) % folds
        df.insert(3, "fold", fold)
        df["split"] = np.where(fold == 0, "test", np.where(fold == 1, "val", "train"))
    (root / "data").mkdir(parents=True)
    df[["track_id", "split"] + (["fold"] if folds else [])].to_csv(root / "data" / "split.csv", index=False)
    # one test track lost its feature row (e.g. decoding failed in the features stage)
    lost = str(df.loc[df["split"] == "test", "track_id"].iloc[0])
    df[df["track_id"] != lost].to_parquet(root / "data" / "features.parquet")
    p = params_from_dict({"ml": {"models": list(models), "random_forest": {"n_estimators": 10}, "workers": 1},
                          "dl": {"models": ["cnn2d"]}, "evaluate": {"tempo_baseline": False}})
    table = C.load_table(root / "data" / "features.parquet")
    for name in models:
        out = C.train(name, table, p.ml, feature_set="gtzan57", workers=1)
        classical_artifact.save(out.model, root / "models" / name, out.card)
        write_json(root / "metrics" / "train-ml" / f"{name}.json", out.metrics)
    return p, lost


def test_run_evaluate_holdout_outputs_and_determinism(tmp_path):
    import json

    p, lost = _classical_project(tmp_path)
    (tmp_path / "metrics").mkdir(exist_ok=True)
    (tmp_path / "metrics" / "xgboost.json").write_text("{}")  # stale: xgboost is no longer listed
    (tmp_path / "metrics" / "fetch.json").write_text("{}")  # another stage's file: untouched
    logs = []
    summary = S.run_evaluate(p, eval_paths(tmp_path), log=logs.append)
    assert set(summary) == {"logreg", "random_forest"}
    for name, s in summary.items():
        assert {"accuracy", "macro_f1", "top3", "balanced_accuracy"} <= set(s)
        assert s["n_tracks"] == 15 and s["n_skipped"] == 1  # the lost track is counted
        m = json.loads((tmp_path / "metrics" / f"{name}.json").read_text())
        assert m["skipped"][0]["track_id"] == lost
        assert m["track"]["accuracy"] == s["accuracy"]
        assert sum(v["support"] for v in m["track"]["per_class"].values()) == 14
        csv = (tmp_path / "reports" / "confusion" / f"{name}.csv").read_text().splitlines()
        assert csv[0] == "track_id,fold,actual,predicted" and len(csv) == 15
        assert (tmp_path / "reports" / "figures" / f"confusion_{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "metrics" / "xgboost.json").exists()
    assert (tmp_path / "metrics" / "fetch.json").exists()
    assert any("cnn2d: no artifact" in line for line in logs)
    md = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "`cnn2d`" in md and "holdout" in md
    # rerun: byte-identical metrics, leaderboard and plot data
    files = ["metrics/logreg.json", "metrics/random_forest.json", "metrics/summary.json", "reports/leaderboard.md",
             "reports/confusion/logreg.csv", "reports/figures/confusion_logreg.png"]
    before = {f: (tmp_path / f).read_bytes() for f in files}
    S.run_evaluate(p, eval_paths(tmp_path), log=lambda s: None)
    assert {f: (tmp_path / f).read_bytes() for f in files} == before


def test_run_evaluate_kfold_reports_the_mean_over_folds(tmp_path):
    import json

    p, _ = _classical_project(tmp_path, folds=3, models=("logreg",))
    summary = S.run_evaluate(p, eval_paths(tmp_path), log=lambda s: None)
    m = json.loads((tmp_path / "metrics" / "logreg.json").read_text())
    assert m["n_folds"] == 3 and m["folds"] == [0, 1, 2]
    assert m["per_fold"]["0"]["source"] == "evaluate"  # the saved artifact is fold 0's
    assert m["per_fold"]["1"]["source"] == "train-ml"  # folds 1, 2: train-ml's per-fold test scores
    accs = [m["per_fold"][f]["track"]["accuracy"] for f in "012"]
    assert summary["logreg"]["accuracy"] == pytest.approx(np.mean(accs), abs=1e-6)
    assert summary["logreg"]["accuracy_std"] == pytest.approx(np.std(accs), abs=1e-6)
    assert summary["logreg"]["n_folds"] == 3 and summary["logreg"]["n_tracks"] == 60
    # same protocol: evaluate's fold-0 score equals train-ml's own fold-0 test score
    tm = json.loads((tmp_path / "metrics" / "train-ml" / "logreg.json").read_text())
    assert m["per_fold"]["0"]["track"]["accuracy"] == pytest.approx(tm["per_fold"]["0"]["test"]["accuracy"], abs=1e-6)
    md = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "3-fold" in md and "| logreg | classical | " in md
    row = next(line for line in md.splitlines() if "| logreg |" in line).split(" | ")
    assert row[4] == "3" and "±" in row[3]  # folds column, std over folds


@pytest.mark.slow  # librosa's first call compiles with numba
def test_tempo_baseline_on_click_tracks_counts_broken_files(tmp_path):
    import pandas as pd
    import soundfile as sf

    sr = 22050
    rows = []
    for tid, bpm in (("c120", 120.0), ("c100", 100.0)):
        y = np.zeros(int(8 * sr), dtype=np.float32)
        for t in np.arange(0, 8, 60.0 / bpm):
            i = int(t * sr)
            y[i : i + 200] = np.hanning(200) * np.sin(2 * np.pi * 1000 * np.arange(200) / sr)
        sf.write(tmp_path / f"{tid}.wav", y, sr)
        rows.append((tid, str(tmp_path / f"{tid}.wav"), bpm))
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really audio")
    rows.append(("bad", str(tmp_path / "bad.wav"), 110.0))
    rows.append(("noref", str(tmp_path / "c120.wav"), np.nan))
    tracks = pd.DataFrame(rows, columns=["track_id", "path", "tempo_bpm"])
    audio = {"sample_rate": sr, "offset_s": 0.0, "duration_s": None, "pad": True}
    out = S.tempo_baseline(tracks, ["c120", "c100", "bad", "noref", "not-in-tracks"], audio, workers=1)
    assert set(out["estimates"]) == {"c120", "c100", "bad"}  # no reference -> not run
    assert set(out["failed"]) == {"bad"} and np.isnan(out["estimates"]["bad"])
    m = out["metrics"]
    assert m["n"] == 3 and m["n_no_estimate"] == 1
    assert m["acc2"] == pytest.approx(2 / 3)  # both click tracks within 4 % up to octave errors


# ------------------------------------------------------------------------ calibration
def test_ece_and_brier_hand_computed():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    y = np.array([0, 1, 1, 0])
    # four different bins: mean |correct - confidence| = (0.1 + 0.6 + 0.3 + 0.2) / 4
    assert CAL.expected_calibration_error(y, probs) == pytest.approx(0.3)
    # (0.01 + 0.01) + (0.36 + 0.36) + (0.09 + 0.09) + (0.04 + 0.04), over 4 rows
    assert CAL.brier_score(y, probs) == pytest.approx(0.25)
    # one bin (0.933, 1]: accuracy 1/2, mean confidence 0.955
    same_bin = np.array([[0.95, 0.05], [0.04, 0.96]])
    assert CAL.expected_calibration_error([0, 0], same_bin) == pytest.approx(0.455)
    onehot = np.eye(3)[[0, 2, 1]]
    assert CAL.expected_calibration_error([0, 2, 1], onehot) == 0.0 and CAL.brier_score([0, 2, 1], onehot) == 0.0
    assert CAL.brier_score([1, 0], np.eye(2)) == pytest.approx(2.0)  # confidently wrong: the maximum
    assert np.isnan(CAL.expected_calibration_error([], np.zeros((0, 3))))


def test_run_evaluate_writes_calibration_and_per_track_predictions(tmp_path):
    import json

    import pandas as pd

    p, lost = _classical_project(tmp_path)
    summary = S.run_evaluate(p, eval_paths(tmp_path), log=lambda s: None)
    for name in ("logreg", "random_forest"):
        s = summary[name]
        assert 0.0 <= s["ece"] <= 1.0 and 0.0 <= s["brier"] <= 2.0
        m = json.loads((tmp_path / "metrics" / f"{name}.json").read_text())
        assert m["track"]["ece"] == s["ece"]
        df = pd.read_csv(tmp_path / "reports" / "predictions" / f"{name}.csv", dtype={"track_id": str},
                         keep_default_na=False)
        assert list(df.columns) == ["track_id", "fold", "true", "predicted", "p_blues", "p_jazz", "p_metal"]
        assert len(df) == 14 and lost not in set(df["track_id"]) and list(df["track_id"]) == sorted(df["track_id"])
        assert np.allclose(df[["p_blues", "p_jazz", "p_metal"]].sum(axis=1), 1.0, atol=1e-5)
        assert (df["true"] == df["predicted"]).mean() == pytest.approx(s["accuracy"])
        # the file holds what the metrics say
        P = df[["p_blues", "p_jazz", "p_metal"]].to_numpy()
        y = df["true"].map({"blues": 0, "jazz": 1, "metal": 2}).to_numpy()
        assert CAL.brier_score(y, P) == pytest.approx(s["brier"], abs=1e-5)
    md = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "| ECE | ECE raw | Brier |" in md


def test_predictions_file_in_kfold_mode_has_one_row_per_scored_fold_track(tmp_path):
    import pandas as pd

    p, _ = _classical_project(tmp_path, folds=3, models=("logreg",))
    S.run_evaluate(p, eval_paths(tmp_path), log=lambda s: None)
    df = pd.read_csv(tmp_path / "reports" / "predictions" / "logreg.csv", dtype={"track_id": str})
    assert set(df["fold"]) == {0}  # only fold 0 has an artifact; folds 1, 2 come from train-ml's numbers
    assert len(df) == 19  # fold 0's 20 test tracks, less the one without a feature row
