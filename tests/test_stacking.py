"""Issue 23, genre: the taggram feature sets, per-block standardisation, the embedding models'
feature-set choice by inner CV, the stacked ``fusion`` model (out-of-fold protocol, ONNX export,
predict == evaluate) and the use of every non-test track (inner CV instead of a held-out val part)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mgr.features.tables import extract_features, feature_names, feature_set_of
from mgr.models import classical as C
from mgr.models import classical_artifact, estimators
from mgr.params import params_from_dict

SR = 22050
GENRES = ["blues", "jazz", "metal"]
FUSION_SET = "gtzan57+musicnn_msd+musicnn_msd_tags"


def _params(**ml):
    base = {"workers": 1, "fusion": {"estimators": ["logreg-handcrafted", "svm-embedding", "logreg-tags"]}}
    base.update(ml)
    return params_from_dict({"ml": base})


def fusion_table(n_per_class: int = 16, seed: int = 0, *, signal: tuple[float, float, float] = (0.5, 0.12, 0.5),
                 folds: int | None = None) -> pd.DataFrame:
    """Gaussian blobs under the real column names of gtzan57, musicnn_msd and musicnn_msd_tags;
    ``signal``: the class-centre spread of each block (0: that block is noise)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(GENRES)), n_per_class)
    cols = feature_names(FUSION_SET)
    X = rng.normal(size=(y.size, len(cols)))
    for (lo, hi), s in zip(((0, 57), (57, 457), (457, 507)), signal):
        X[:, lo:hi] += rng.normal(scale=s, size=(len(GENRES), hi - lo))[y] if s else 0.0
    df = pd.DataFrame(X, columns=cols)
    order = rng.permutation(y.size)
    split = np.array(["train"] * y.size, dtype=object)
    split[order[: y.size // 5]] = "test"
    split[order[y.size // 5: 2 * (y.size // 5)]] = "val"
    df.insert(0, "track_id", [f"t{i:04d}" for i in range(y.size)])
    df.insert(1, "split", split)
    df.insert(2, "genre", [GENRES[g] for g in y])
    if folds:
        fold = np.empty(y.size, dtype=np.int64)
        fold[order] = np.arange(y.size) % folds
        df.insert(3, "fold", fold)
        df["split"] = np.where(fold == 0, "test", np.where(fold == 1, "val", "train"))
    return df


# ------------------------------------------------------------------------------ the taggram
def test_taggram_feature_set_names_values_and_one_forward_pass():
    from mgr.pretrained import builtin, embedding

    names = feature_names("musicnn_msd_tags")
    assert len(names) == 50 == len(set(names)) and names[0] == "musicnn_msd_tags_00_rock"
    assert "musicnn_msd_tags_33_hip_hop" in names and len(feature_names("musicnn_mtt_tags")) == 50
    assert {feature_set_of(n) for n in names} == {"musicnn_msd_tags"}
    assert feature_set_of("musicnn_msd_mean_000") == "musicnn_msd"
    t = np.arange(int(4 * SR)) / SR
    y = (0.3 * np.sin(2 * np.pi * 110 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t)))).astype(np.float32)
    both = extract_features(y, SR, FUSION_SET)
    assert list(both) == feature_names(FUSION_SET) and len(both) == 507
    tags = np.array([both[n] for n in names])
    assert ((tags >= 0) & (tags <= 1)).all() and tags.std() > 1e-3  # sigmoid tag scores, not constant
    # the same numbers as the taggram of one direct run of the exported backbone
    d = builtin.ensure_builtin("musicnn_msd_tags")
    card = json.loads((d / "model.json").read_text())
    run = embedding.onnx_runner(d / card["onnx_file"])
    from mgr.audio.decode import resample

    direct = embedding.track_features(run, resample(y, SR, 16000))
    np.testing.assert_allclose(tags, direct["tags"], atol=1e-5)
    np.testing.assert_allclose([both[n] for n in feature_names("musicnn_msd")], direct["embedding"], atol=1e-5)
    # a second clip is not served the first one's outputs
    other = extract_features(y[::-1].copy(), SR, "musicnn_msd_tags")
    assert np.abs(np.array(list(other.values())) - tags).max() > 1e-4


def test_feature_sets_needed_and_fusion_params():
    from mgr.errors import ParamsError
    from mgr.models.stacking import base_models, fusion_feature_set
    from mgr.params import feature_sets_needed, resolve_blocks

    p = params_from_dict({})
    assert feature_sets_needed(p) == ["gtzan57", "musicnn_msd", "musicnn_msd_tags"]
    assert [resolve_blocks(c, p.features) for c in p.ml.embedding_candidates][3] == "gtzan57+musicnn_msd_tags"
    assert fusion_feature_set(p.ml, p.features) == FUSION_SET
    assert [b[0] for b in base_models(p.ml, p.features)][:3] == ["logreg-gtzan57", "svm-gtzan57", "logreg-musicnn_msd"]
    for doc, needle in (({"ml": {"embedding_candidates": ["embedding+knn"]}}, "embedding_candidates"),
                        ({"ml": {"fusion": {"estimators": ["xgboost-tags", "svm-tags"]}}}, "ml.fusion.estimators"),
                        ({"ml": {"fusion": {"estimators": ["svm-tags"]}}}, "at least two"),
                        ({"ml": {"embedding_models": ["fusion"]}}, "ml.embedding_models"),
                        ({"ml": {"models": ["fusion"]}}, "ml.models"),
                        ({"ml": {"stacked_models": ["stack"]}}, "ml.stacked_models")):
        with pytest.raises(ParamsError, match=needle):
            params_from_dict(doc)


# ------------------------------------------------------------------ per-block standardisation
def test_combinations_are_standardised_per_block():
    """Each block gets the same share of the variance (a 400-column block does not drown a
    50-column one); a single block keeps the plain StandardScaler."""
    df = fusion_table()
    cols = feature_names("musicnn_msd+musicnn_msd_tags")
    layout = estimators.block_layout(cols)
    assert [(b, len(ix)) for b, ix in layout] == [("musicnn_msd", 400), ("musicnn_msd_tags", 50)]
    X = df[cols].to_numpy() * np.r_[np.full(400, 30.0), np.full(50, 0.01)]  # wildly different raw scales
    m = estimators.build("logreg", _params().ml, layout=layout, n_features=len(cols))
    m.fit(X, np.repeat(np.arange(3), 16))
    Z = m.named_steps["scale"].transform(X)
    share = [Z[:, ix].var(axis=0).sum() for _, ix in layout]
    np.testing.assert_allclose(share, [225.0, 225.0], rtol=1e-6)  # D / B each, total D = 450
    np.testing.assert_allclose(Z.var(axis=0).mean(), 1.0, rtol=1e-6)  # gamma="scale" keeps its meaning
    from sklearn.preprocessing import StandardScaler

    one = estimators.build("logreg", _params().ml, layout=estimators.block_layout(cols[:400]), n_features=400)
    assert type(one.named_steps["scale"]) is StandardScaler


@pytest.mark.parametrize("algo", ["svm", "random_forest"])
def test_multi_block_models_export_to_onnx(algo, tmp_path):
    """An embedding model on a two-block combination (per-block ColumnTransformer in front of the
    SVC; a plain forest) runs the same through its ONNX export."""
    df = fusion_table(signal=(0.3, 0.05, 0.3))
    p = _params(embedding_candidates=["handcrafted+tags"], embedding_models=[algo])
    o = C.train(f"{algo}-musicnn_msd", df, p.ml, feature_set="gtzan57", features=p.features)
    assert o.card["feature_set"] == "gtzan57+musicnn_msd_tags" and o.card["feature_selection"] is None
    card = classical_artifact.save(o.model, tmp_path / algo, o.card, sample=o.sample)
    art = classical_artifact.load(tmp_path / algo)
    np.testing.assert_allclose(art.predict_proba(df, calibrated=False),
                               o.model.predict_proba(df[card["feature_columns"]].to_numpy()), atol=1e-5)


# ------------------------------------------------- the embedding models' choice of feature set
def test_embedding_model_picks_the_winning_combination_by_inner_cv(tmp_path):
    """Only the taggram carries the genre: the embedding model must train on a set holding it,
    chosen by inner CV (card: every candidate's score and why), and the artifact runs on it."""
    df = fusion_table(signal=(0.0, 0.0, 0.8))
    p = _params(embedding_candidates=["embedding", "tags", "handcrafted+embedding"])
    o = C.train("logreg-musicnn_msd", df, p.ml, feature_set="gtzan57", features=p.features)
    sel = o.card["feature_selection"]
    assert [c["feature_set"] for c in sel["candidates"]] == ["musicnn_msd", "musicnn_msd_tags", "gtzan57+musicnn_msd"]
    scores = {c["feature_set"]: c["inner_cv_balanced_accuracy"] for c in sel["candidates"]}
    assert sel["chosen"] == "musicnn_msd_tags" == o.card["feature_set"] and scores["musicnn_msd_tags"] > 0.9
    assert scores["musicnn_msd"] < 0.6 and "inner cross-validation" in sel["method"]
    assert o.card["feature_columns"] == feature_names("musicnn_msd_tags")
    assert o.metrics["feature_selection"]["chosen"] == "musicnn_msd_tags"
    card = classical_artifact.save(o.model, tmp_path / "m", o.card, sample=o.sample)
    art = classical_artifact.load(tmp_path / "m")
    np.testing.assert_allclose(art.predict_proba(df, calibrated=False),
                               o.model.predict_proba(df[card["feature_columns"]].to_numpy()), atol=1e-5)
    # a model not of ml.embedding_models (an explicit <model>-<set>) trains on its set as named
    o2 = C.train("svm-musicnn_msd", df, _params(embedding_models=["logreg"]).ml, feature_set="gtzan57")
    assert o2.card["feature_set"] == "musicnn_msd" and o2.card["feature_selection"] is None


# ----------------------------------------------------------------------------- the fusion
@pytest.fixture(scope="module")
def fused():
    df = fusion_table()
    p = _params()
    return df, p, C.train("fusion", df, p.ml, feature_set="gtzan57", features=p.features)


def test_fusion_is_a_stacking_classifier_exported_to_onnx(fused, tmp_path):
    from sklearn.ensemble import StackingClassifier

    df, p, o = fused
    assert isinstance(o.model, StackingClassifier) and o.model.stack_method_ == ["predict_proba"] * 3
    assert [n for n, _ in o.model.estimators] == ["logreg-gtzan57", "svm-musicnn_msd", "logreg-musicnn_msd_tags"]
    assert o.card["feature_set"] == FUSION_SET and o.card["feature_columns"] == feature_names(FUSION_SET)
    assert "StackingClassifier" in o.card["estimator"]
    card = classical_artifact.save(o.model, tmp_path / "fusion", o.card, sample=o.sample)
    assert card["model_file"] == classical_artifact.SKOPS_FILE
    art = classical_artifact.load(tmp_path / "fusion")  # ONNX on onnxruntime, what evaluate and predict run
    X = df[card["feature_columns"]].to_numpy()
    np.testing.assert_allclose(art.predict_proba(df, calibrated=False), o.model.predict_proba(X), atol=1e-5)
    native = classical_artifact.load_native(tmp_path / "fusion")  # skops with the trusted types only
    np.testing.assert_array_equal(native.predict_proba(X), o.model.predict_proba(X))
    assert o.metrics["val"]["accuracy"] > 0.9  # out-of-fold over the non-test tracks


def test_fusion_on_too_few_tracks_is_one_clear_error():
    from mgr.errors import DataError

    df = fusion_table(n_per_class=3)
    df["split"] = np.where(np.arange(len(df)) % 3 == 0, "test", "train")  # 2 training tracks per genre
    p = _params()
    with pytest.raises(DataError, match="at least 3 training tracks per genre"):
        C.train("fusion", df, p.ml, feature_set="gtzan57", features=p.features)


def _perturb(df: pd.DataFrame, rows: np.ndarray, seed: int = 1) -> pd.DataFrame:
    """``rows`` get other features and other genres."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    cols = classical_artifact.feature_columns(df)
    out.loc[rows, cols] = rng.normal(scale=3.0, size=(int(rows.sum()), len(cols)))
    out.loc[rows, "genre"] = rng.permutation(out.loc[rows, "genre"].to_numpy())[::-1]
    return out


def test_no_test_track_influences_training(fused):
    """Change every test track (features and genres): the fusion (bases, out-of-fold meta-learner,
    temperature), an embedding model's feature-set choice and fold 0 of a k-fold run are
    bit-identical. A leak of any test track into fit, the stacking folds, the inner CV or the
    selection would change them."""
    df, p, o = fused
    test = (df["split"] == "test").to_numpy()
    o2 = C.train("fusion", _perturb(df, test), p.ml, feature_set="gtzan57", features=p.features)
    probe = np.random.default_rng(5).normal(size=(7, 507))
    np.testing.assert_array_equal(o2.model.predict_proba(probe), o.model.predict_proba(probe))
    for k in ("calibration", "val_metrics", "train_data_hash", "n_train"):
        assert o2.card[k] == o.card[k], k
    # the same for the embedding models' candidate choice, and for fold 0 in k-fold mode
    pe = _params(embedding_candidates=["embedding", "tags", "handcrafted+tags"])
    dk = fusion_table(n_per_class=15, folds=5)
    a = C.train("logreg-musicnn_msd", dk, pe.ml, feature_set="gtzan57", features=pe.features)
    b = C.train("logreg-musicnn_msd", _perturb(dk, (dk["fold"] == 0).to_numpy()), pe.ml, feature_set="gtzan57",
                features=pe.features)
    assert a.card["feature_selection"] == b.card["feature_selection"] and a.card["calibration"] == b.card["calibration"]
    np.testing.assert_array_equal(a.model.predict_proba(probe[:, :a.model.n_features_in_]),
                                  b.model.predict_proba(probe[:, :b.model.n_features_in_]))
    assert a.metrics["per_fold"]["0"]["test"] != b.metrics["per_fold"]["0"]["test"]  # the test tracks did change


def test_every_non_test_track_trains_the_model(fused):
    """inner_cv (default): the val tracks train the final model (changing one changes it) and
    n_train counts them; holdout: they do not."""
    df, p, o = fused
    val = (df["split"] == "val").to_numpy()
    assert o.card["n_train"] == int((df["split"] != "test").sum()) == o.card["val_metrics"]["n"]
    one_val = val & (np.cumsum(val) == 1)
    o2 = C.train("fusion", _perturb(df, one_val), p.ml, feature_set="gtzan57", features=p.features)
    probe = np.random.default_rng(5).normal(size=(7, 507))
    assert np.abs(o2.model.predict_proba(probe) - o.model.predict_proba(probe)).max() > 1e-9
    h = _params(validation="holdout").ml
    a = C.train("logreg", df, h, feature_set="gtzan57")
    b = C.train("logreg", _perturb(df, one_val), h, feature_set="gtzan57")
    assert a.card["n_train"] == int((df["split"] == "train").sum())
    X = probe[:, :57]
    np.testing.assert_array_equal(a.model.predict_proba(X), b.model.predict_proba(X))


@pytest.mark.slow
def test_fusion_predict_equals_evaluate(tmp_path):
    """A fusion artifact on real extracted features: ``mgr predict`` on a file gives the
    probabilities evaluate scores for it."""
    import soundfile as sf

    from mgr.audio.decode import load_audio
    from mgr.evaluation.scoring import evaluate_classical
    from mgr.inference.predictors import load_predictor

    def clip(seconds, seed, f0, bpm):
        rng = np.random.default_rng(seed)
        t = np.arange(int(seconds * SR)) / SR
        beat = (np.mod(t, 60.0 / bpm) < 0.03).astype(np.float32)
        return (0.3 * np.sin(2 * np.pi * f0 * t) * (0.3 + beat) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)

    rows = []
    for g, (f0, bpm) in {"low": (150.0, 90.0), "mid": (420.0, 115.0), "high": (900.0, 140.0)}.items():
        for i in range(5):
            rows.append({"track_id": f"{g}{i}", "split": "train", "genre": g,
                         **extract_features(clip(3.0, i, f0 + 25 * i, bpm), SR, FUSION_SET)})
    p = _params()
    o = C.train("fusion", pd.DataFrame(rows), p.ml, feature_set="gtzan57", features=p.features)
    d = tmp_path / "fusion"
    classical_artifact.save(o.model, d, o.card, sample=o.sample)
    path = tmp_path / "q.wav"
    sf.write(path, clip(3.0, 9, 880.0, 140.0), SR)
    feats = extract_features(load_audio(path, sr=SR), SR, FUSION_SET)
    table = pd.DataFrame([{"track_id": "q", "split": "test", "genre": "high", **feats}])
    art = classical_artifact.load(d)
    res = evaluate_classical(art, table, ["q"])
    ev = art.predict_proba(table)[0]
    r = load_predictor(d, top_k=3, gate=False).predict_file(path)  # a tone with clicks: not music to the gate
    got = dict(r.top_k)
    assert max(abs(got[lab] - ev[i]) for i, lab in enumerate(art.labels)) < 1e-5
    assert res["predictions"][0][2] == r.genre
