"""Metric functions against hand-computed cases (mgr.evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mgr import evaluation as ev

# y_true / y_pred used by several tests (3 classes)
T = [0, 0, 0, 1, 1, 2]
P = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_rows_actual_cols_predicted():
    cm = ev.confusion_matrix(T, P, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a class that never occurs still gets a row/column when n_classes says so
    assert ev.confusion_matrix([0], [0], 2).tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError):
        ev.confusion_matrix([3], [0], 2)


def test_accuracy_balanced_accuracy_f1_by_hand():
    assert ev.accuracy(T, P) == pytest.approx(4 / 6)
    # recalls: 2/3, 1/2, 1/1
    assert ev.balanced_accuracy(T, P, 3) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    pr = ev.per_class_precision_recall(T, P, 3)
    # precisions: 2/2, 1/2, 1/2
    assert pr["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert pr["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert pr["support"].tolist() == [3, 2, 1]
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    assert pr["f1"].tolist() == pytest.approx(f1)
    assert ev.macro_f1(T, P, 3) == pytest.approx(sum(f1) / 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_macro_averages_skip_absent_classes_like_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, 50)
    p = np.where(rng.random(50) < 0.6, t, rng.integers(0, 5, 50))
    t[t == 4] = 3  # class 4 absent from y_true, maybe present in y_pred
    assert ev.balanced_accuracy(t, p, 6) == pytest.approx(balanced_accuracy_score(t, p))
    assert ev.macro_f1(t, p, 6) == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    # zero division -> 0, never NaN
    pr = ev.per_class_precision_recall([0, 0], [1, 1], 2)
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
    assert ev.top_k_accuracy(y, scores, 1) == 0.0
    assert ev.top_k_accuracy(y, scores, 2) == 0.0
    assert ev.top_k_accuracy(y, scores, 3) == pytest.approx(2 / 4)
    assert ev.top_k_accuracy(y, scores, 4) == 1.0


def test_classification_metrics_bundle():
    scores = np.eye(3)[P] * 0.8 + 0.1
    m = ev.classification_metrics(T, scores, ["a", "b", "c"])
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
    tracks, scores, pred = ev.aggregate_tracks(w, tid, "mean")
    assert tracks.tolist() == [3, 7]
    assert scores[1] == pytest.approx([1.9 / 3, 1.1 / 3])
    assert pred.tolist() == [1, 0]
    tracks, scores, pred = ev.aggregate_tracks(w, tid, "vote")
    assert pred.tolist() == [1, 1]  # vote: 2 windows for class 1 beat 1 for class 0
    with pytest.raises(ValueError):
        ev.aggregate_tracks(w, tid, "median")


def test_vote_tie_broken_by_higher_mean_probability():
    # one vote each for class 0 and class 2; mean prob of class 2 is higher -> 2 wins
    w = np.array([[0.40, 0.30, 0.30], [0.00, 0.10, 0.90]])
    pred, scores = ev.vote(w)
    assert pred == 2
    # the score row ranks by (votes, mean): 2 > 0 > 1
    assert np.argsort(-scores, kind="stable").tolist() == [2, 0, 1]


def test_vote_tie_in_votes_and_mean_goes_to_lower_index():
    w = np.array([[0.0, 0.6, 0.4], [0.0, 0.4, 0.6]])  # one vote each for 1 and 2, equal means
    pred, scores = ev.vote(w)
    assert pred == 1
    # equal scores rank the lower index first (stable sort), like argmax
    assert scores[1] == scores[2] > scores[0]
    assert np.argsort(-scores, kind="stable").tolist() == [1, 2, 0]


def test_vote_more_votes_beat_higher_mean():
    w = np.array([[0.51, 0.49], [0.51, 0.49], [0.0, 1.0]])  # class 0: 2 votes, mean .34; class 1: mean .66
    pred, scores = ev.vote(w)
    assert pred == 0 and scores[0] > scores[1]
    _, agg_scores, agg_pred = ev.aggregate_tracks(w, ["x", "x", "x"], "vote")
    assert agg_pred.tolist() == [0] and agg_scores[0] == pytest.approx(scores)


# ------------------------------------------------------------------------- tempo
def test_tempo_acc1_exactly_at_the_4_percent_boundary():
    # 4 % of 100 BPM = 4 BPM; 4 % of 125 = 5; boundary is inside, just beyond is outside
    assert ev.tempo_acc1([104.0], [100.0]) == 1.0
    assert ev.tempo_acc1([96.0], [100.0]) == 1.0
    assert ev.tempo_acc1([130.0], [125.0]) == 1.0
    assert ev.tempo_acc1([104.01], [100.0]) == 0.0
    assert ev.tempo_acc1([95.99], [100.0]) == 0.0
    assert ev.tempo_acc1([124.8], [120.0]) == 1.0  # 4.8 BPM, not exact in binary floating point
    assert ev.tempo_acc1([124.81], [120.0]) == 0.0


def test_tempo_acc2_octave_and_third_errors_at_the_boundary():
    ref = 100.0
    # x2: tolerance is 4 % of 200 = 8 BPM; x1/2: 2 BPM; x3: 12 BPM; x1/3: 4/3 BPM
    cases = {208.0: 1, 208.1: 0, 52.0: 1, 52.1: 0, 312.0: 1, 312.1: 0, 100 / 3 + 4 / 3: 1, 100 / 3 + 1.4: 0, 150.0: 0}
    for est, ok in cases.items():
        assert ev.tempo_acc2([est], [ref]) == ok, est
        assert ev.tempo_acc1([est], [ref]) == 0.0, est
    assert ev.tempo_acc2([104.0], [ref]) == 1.0  # Acc1 implies Acc2


def test_tempo_metrics_counts_missing_and_mae():
    est = [100.0, 200.0, np.nan, 90.0]
    ref = [100.0, 100.0, 120.0, np.nan]
    m = ev.tempo_metrics(est, ref)
    assert m["n"] == 3 and m["n_no_reference"] == 1 and m["n_no_estimate"] == 1
    assert m["acc1"] == pytest.approx(1 / 3)  # the missing estimate counts as wrong
    assert m["acc2"] == pytest.approx(2 / 3)
    assert m["mae_bpm"] == pytest.approx((0 + 100) / 2)
    assert math.isnan(ev.tempo_acc1([1.0], [np.nan]))


def test_tempo_from_probs():
    centres = [80.0, 100.0, 120.0]
    p = np.array([[0.2, 0.5, 0.3], [0.5, 0.5, 0.0]])
    assert ev.tempo_from_probs(p, centres).tolist() == [100.0, 80.0]
    assert ev.tempo_from_probs(p, centres, "weighted").tolist() == pytest.approx([102.0, 90.0])
    with pytest.raises(ValueError):
        ev.tempo_from_probs(p, [1.0, 2.0])


# -------------------------------------------------------------------------- tags
def test_roc_auc_and_average_precision_by_hand():
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.7, 0.1]
    # pairs (pos, neg): (0.9>0.8)(0.9>0.1)(0.7<0.8)(0.7>0.1) -> 3/4
    assert ev.roc_auc(y, s) == pytest.approx(0.75)
    # ranked: + - + -  -> AP = 1/2 * 1 + 1/2 * 2/3
    assert ev.average_precision(y, s) == pytest.approx(0.5 + 1 / 3)
    # ties count 1/2 in ROC-AUC and form one threshold in AP
    assert ev.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert ev.average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(ev.roc_auc([1, 1], [0.2, 0.3]))


def test_roc_and_pr_match_sklearn_on_random_data():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # rounded -> many ties
    assert ev.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert ev.average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_tag_metrics_skips_single_class_tags_and_says_so():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.7, 0.3, 0.5], [0.1, 0.4, 0.5]])
    m = ev.tag_metrics(y, s, ["rock", "never", "always"])
    assert m["tags_skipped"] == ["never", "always"]
    assert m["n_tags_used"] == 1
    assert m["roc_auc"] == pytest.approx(0.75) and m["pr_auc"] == pytest.approx(0.5 + 1 / 3)
    m = ev.tag_metrics(y[:, 1:], s[:, 1:])
    assert m["n_tags_used"] == 0 and math.isnan(m["roc_auc"])


def test_mean_std():
    assert ev.mean_std([0.5, 0.7, float("nan")]) == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "n": 2}
    assert ev.mean_std([])["n"] == 0
