"""mgr.models.classical: training on a tiny generated table, safe artifacts, feature checks."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mgr.errors import ArtifactError, DataError, ParamsError
from mgr.models import classical as C
from mgr.models import classical_artifact, estimators
from mgr.params import ML_MODELS, params_from_dict

GENRES = ["blues", "jazz", "metal", "pop"]
N_FEAT = 10


def make_table(n_per_class: int = 60, seed: int = 0, folds: int | None = None) -> pd.DataFrame:
    """Separable Gaussian blobs: 4 genres x n_per_class tracks x 10 features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(len(GENRES), N_FEAT))
    y = np.repeat(np.arange(len(GENRES)), n_per_class)
    X = centres[y] + rng.normal(size=(y.size, N_FEAT))
    df = pd.DataFrame(X, columns=[f"mfcc{i + 1}_mean" for i in range(N_FEAT)])
    n = y.size
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[: n // 5]] = "test"
    split[order[n // 5 : n // 5 + n // 5]] = "val"
    df.insert(0, "track_id", [f"{GENRES[g]}.{i:05d}" for i, g in enumerate(y)])
    df.insert(1, "split", split)
    df.insert(2, "genre", [GENRES[g] for g in y])
    if folds:
        fold = np.empty(n, dtype=np.int64)
        fold[order] = np.arange(n) % folds
        df.insert(3, "fold", fold)
        # fold 0's assignment, as split.csv has it
        df["split"] = np.where(fold == 0, "test", np.where(fold == 1, "val", "train"))
    return df


def small_ml(**over):
    ml = {
        "xgboost": {"n_estimators": 15, "max_depth": 3},
        "random_forest": {"n_estimators": 15},
        "svm": {"C": 3.0},
        "workers": 1,
    }
    ml.update(over)
    return params_from_dict({"ml": ml}).ml


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table()


@pytest.fixture(scope="module")
def trained(table, tmp_path_factory) -> dict:
    """Every registered model trained once on the tiny table and saved."""
    out = {}
    root = tmp_path_factory.mktemp("models")
    ml = small_ml()
    for name in estimators.REGISTRY:
        o = C.train(name, table, ml, feature_set="gtzan57")
        card = classical_artifact.save(o.model, root / name, o.card)
        out[name] = (o, card, root / name)
    return out


def test_registry_matches_params():
    assert tuple(estimators.REGISTRY) == ML_MODELS
    with pytest.raises(ParamsError, match="unknown classical model 'knn'"):
        estimators.get_spec("knn")


@pytest.mark.parametrize("name", ML_MODELS)
def test_round_trip_identical_predictions(trained, table, name):
    o, card, model_dir = trained[name]
    expected_file = classical_artifact.XGB_FILE if name == "xgboost" else classical_artifact.SKOPS_FILE
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([classical_artifact.CARD_FILE, expected_file, classical_artifact.ONNX_FILE])
    art = classical_artifact.load(model_dir)  # the ONNX model on onnxruntime (what evaluate and predict run)
    X = table[card["feature_columns"]].to_numpy()
    before = o.model.predict_proba(X)
    after = art.predict_proba(table, calibrated=False)  # the model's raw probabilities
    assert after.shape == (len(table), len(GENRES))
    np.testing.assert_allclose(after, before, atol=1e-4, rtol=0)  # float32 ONNX vs float64 sklearn
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(classical_artifact.load_native(model_dir).predict_proba(X), before)  # native file round trip
    assert art.labels == GENRES
    assert art.feature_columns == [f"mfcc{i + 1}_mean" for i in range(N_FEAT)]
    # the blobs are separable: every model is far above chance (0.25) on val
    assert o.metrics["val"]["accuracy"] > 0.7, o.metrics
    assert art.predict(table.iloc[:5]) == [GENRES[i] for i in before[:5].argmax(axis=1)]


def test_card_contents(trained, table):
    o, card, model_dir = trained["svm"]
    disk = json.loads((model_dir / classical_artifact.CARD_FILE).read_text())
    assert disk == json.loads(json.dumps(card))
    for key in ("name", "kind", "labels", "feature_set", "feature_columns", "params", "train_data_hash",
                "val_metrics", "versions", "model_file", "model_sha256", "onnx_file", "onnx_sha256"):
        assert key in disk, key
    assert "created" not in disk  # a card is the same bits on every machine: no creation time
    assert disk["kind"] == "classical" and disk["name"] == "svm" and disk["feature_set"] == "gtzan57"
    assert disk["params"]["C"] == 3.0 and disk["params"]["gamma"] == "scale"
    assert "scikit-learn" in disk["versions"] and "skops" in disk["versions"]
    # inner_cv (the default): every non-test track trains the model; val metrics are out-of-fold
    train = table[table["split"] != "test"]
    assert disk["n_train"] == len(train) and disk["params"]["validation"] == "inner_cv"
    assert disk["train_data_hash"] == C.train_data_hash(train.sort_values("track_id"), disk["feature_columns"])
    vm = disk["val_metrics"]
    assert vm["n"] == len(train)
    assert set(vm["per_class"]) == set(GENRES)
    assert o.metrics["val"] == {k: vm[k] for k in C.HEADLINE}
    assert "test" not in o.metrics  # holdout mode: test is left to the evaluate stage


def test_train_data_hash_tracks_rows_and_values(table):
    cols = classical_artifact.feature_columns(table)
    h = C.train_data_hash(table, cols)
    assert h == C.train_data_hash(table.copy(), cols)
    changed = table.copy()
    changed.loc[3, cols[0]] += 1e-9
    assert C.train_data_hash(changed, cols) != h
    assert C.train_data_hash(table.iloc[1:], cols) != h


def test_columns_reordered_and_checked(trained, table):
    art = classical_artifact.load(trained["logreg"][2])
    shuffled = table[["genre", "track_id"] + art.feature_columns[::-1]]
    np.testing.assert_array_equal(art.predict_proba(shuffled), art.predict_proba(table))
    with pytest.raises(ArtifactError, match=r"feature columns do not match model 'logreg'.*missing \['mfcc3_mean'\]"):
        art.predict_proba(table.drop(columns=["mfcc3_mean"]))
    with pytest.raises(ArtifactError, match=r"unexpected \['zcr_mean'\]"):
        art.predict_proba(table.assign(zcr_mean=0.0))
    renamed = table.rename(columns={"mfcc1_mean": "mfcc_first_mean"})
    with pytest.raises(ArtifactError, match="missing.*unexpected"):
        art.predict_proba(renamed)
    # columns of other known feature sets are ignored: one table holds every set the models use
    both = table.assign(musicnn_msd_mean_000=1.0, mfcc_mean_01=2.0)
    np.testing.assert_array_equal(art.predict_proba(both), art.predict_proba(table))
    with pytest.raises(ArtifactError, match=r"expects 10 feature columns .* shape \(4, 9\)"):
        art.predict_proba(np.zeros((4, 9)))
    with pytest.raises(DataError, match="non-finite"):
        art.predict_proba(table.assign(mfcc2_mean=np.nan))


class _Boom:
    """Unpickling this would create the marker file (stand-in for arbitrary code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["svm", "xgboost"])
def test_plain_pickle_refused_before_any_code_runs(trained, tmp_path, name):
    src = trained[name][2]
    card = json.loads((src / classical_artifact.CARD_FILE).read_text())
    d = tmp_path / name
    d.mkdir()
    (d / classical_artifact.CARD_FILE).write_text(json.dumps(card))
    marker = tmp_path / "pwned"
    (d / card["model_file"]).write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ArtifactError, match="plain pickle"):
        classical_artifact.load_native(d)
    assert not marker.exists()


def _rewrite_schema(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as zi:
        schema = json.loads(zi.read("schema.json"))
        edit(schema)
        with zipfile.ZipFile(dst, "w") as zo:
            for it in zi.infolist():
                data = json.dumps(schema).encode() if it.filename == "schema.json" else zi.read(it.filename)
                zo.writestr(it, data)


def _first_node(node, module_prefix):
    if isinstance(node, dict):
        if str(node.get("__module__", "")).startswith(module_prefix):
            return node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _first_node(child, module_prefix)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("module,cls", [("builtins", "eval"), ("posix", "system")])
def test_tampered_skops_refused(trained, tmp_path, module, cls):
    src = trained["logreg"][2]
    d = tmp_path / "logreg"
    d.mkdir()
    (d / classical_artifact.CARD_FILE).write_text((src / classical_artifact.CARD_FILE).read_text())

    def edit(schema):
        node = _first_node(schema, "sklearn.preprocessing")
        assert node is not None
        node["__module__"], node["__class__"] = module, cls

    _rewrite_schema(src / classical_artifact.SKOPS_FILE, d / classical_artifact.SKOPS_FILE, edit)
    with pytest.raises(ArtifactError, match=rf"not trusted: {module}\.{cls}"):
        classical_artifact.load_native(d)


def test_skops_with_untrusted_function_refused(tmp_path, trained):
    """A well-formed skops file whose model calls os.system: refused, whatever the card says."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    src = trained["logreg"][2]
    d = tmp_path / "evil"
    d.mkdir()
    (d / classical_artifact.CARD_FILE).write_text((src / classical_artifact.CARD_FILE).read_text())
    sio.dump(Pipeline([("f", FunctionTransformer(os.system))]), d / classical_artifact.SKOPS_FILE)
    with pytest.raises(ArtifactError, match="not trusted: .*system"):
        classical_artifact.load_native(d)


def test_foreign_and_broken_artifacts(trained, tmp_path):
    src = trained["svm"][2]
    card = json.loads((src / classical_artifact.CARD_FILE).read_text())
    d = tmp_path / "m"
    d.mkdir()
    (d / classical_artifact.CARD_FILE).write_text(json.dumps(card))
    (d / classical_artifact.SKOPS_FILE).write_bytes(b"RIFF....WAVEfmt not a model")
    with pytest.raises(ArtifactError, match="not a skops file"):
        classical_artifact.load_native(d)
    (d / classical_artifact.SKOPS_FILE).unlink()
    with pytest.raises(ArtifactError, match="not found"):
        classical_artifact.load_native(d)
    for bad, msg in [
        ({"model_file": "../../etc/passwd"}, "model_file must be a file name inside"),
        ({"model_file": "other.bin"}, "model_file must be one of"),
        ({"kind": "deep"}, "not a classical one"),
        ({"labels": []}, "labels must be a list of at least two strings"),
    ]:
        (d / classical_artifact.CARD_FILE).write_text(json.dumps({**card, **bad}))
        with pytest.raises(ArtifactError, match=msg):
            classical_artifact.load_native(d)
    (d / classical_artifact.CARD_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        classical_artifact.load_native(d)
    with pytest.raises(ArtifactError, match="not a model directory"):
        classical_artifact.load_native(tmp_path / "nowhere")
    # card and model disagree on the label count
    x = tmp_path / "x"
    x.mkdir()
    (x / classical_artifact.SKOPS_FILE).write_bytes((src / classical_artifact.SKOPS_FILE).read_bytes())
    (x / classical_artifact.CARD_FILE).write_text(json.dumps({**card, "labels": card["labels"][:3]}))
    with pytest.raises(ArtifactError, match="4 classes but the card lists 3"):
        classical_artifact.load_native(x)
    # an XGBoost file that is not a model
    xg = tmp_path / "xg"
    xg.mkdir()
    (xg / classical_artifact.CARD_FILE).write_text(json.dumps({**card, "model_file": classical_artifact.XGB_FILE, "model_sha256": None}))
    (xg / classical_artifact.XGB_FILE).write_bytes(b"{garbage")
    with pytest.raises(ArtifactError, match="not a valid XGBoost model"):
        classical_artifact.load_native(xg)


def test_kfold_reports_every_fold_and_saves_fold0(tmp_path):
    """k-fold with inner_cv (the default): fold f's model trains on every track outside fold f
    (val fold included: 4/5 of the data, not 3/5), its val scores are out-of-fold over those
    tracks, the metrics show each fold's train and test sizes; holdout validation keeps the old
    protocol (train = the rest, val = fold f+1)."""
    df = make_table(n_per_class=30, folds=5)
    o = C.train("logreg", df, small_ml(), feature_set="gtzan57")
    m = o.metrics
    assert m["folds"] == 5 and len(m["per_fold"]) == 5 and m["validation"].startswith("inner_cv")
    for part in ("val", "test"):
        per = [m["per_fold"][str(f)][part]["accuracy"] for f in range(5)]
        assert m[part]["accuracy"] == pytest.approx(np.mean(per))
        assert m[f"{part}_std"]["accuracy"] == pytest.approx(np.std(per))
    for f in range(5):  # each fold's test part is that fold's tracks; all the others train it
        pf = m["per_fold"][str(f)]
        assert pf["test"]["n"] == pf["n_test"] == int((df["fold"] == f).sum())
        assert pf["n_train"] == pf["val"]["n"] == int((df["fold"] != f).sum())
    # folds differ (different training rows), the artifact is fold 0's model
    assert len({r.train_hash for r in o.folds}) == 5
    fold0_train = df[df["fold"] != 0]
    assert o.card["n_train"] == len(fold0_train)
    assert o.card["train_data_hash"] == C.train_data_hash(fold0_train.sort_values("track_id"), classical_artifact.feature_columns(df))
    assert o.card["cv"]["k"] == 5 and o.card["val_metrics"] == o.folds[0].val
    assert o.model is o.folds[0].model
    h = C.train("logreg", df, small_ml(validation="holdout"), feature_set="gtzan57").metrics
    for f in range(5):
        assert h["per_fold"][str(f)]["n_train"] == int((~df["fold"].isin([f, (f + 1) % 5])).sum())
        assert h["per_fold"][str(f)]["val"]["n"] == int((df["fold"] == (f + 1) % 5).sum())


def test_grid_search_on_train_picks_best(table):
    ml = small_ml(search="grid", logreg={"grid": {"C": [1e-4, 1.0]}})
    o = C.train("logreg", table, ml, feature_set="gtzan57")
    s = o.card["search"]
    assert s["n_candidates"] == 2 and s["scoring"] == "balanced_accuracy"
    # a tiny C collapses the model towards the class prior, so C=1 wins
    assert s["best_params"] == {"C": 1.0} and o.card["params"]["C"] == 1.0
    scores = {r["params"]["C"]: r["mean"] for r in s["results"]}
    assert scores[1.0] > scores[1e-4]
    assert o.metrics["search_best_cv_score"] == s["best_score"]


def test_random_search_is_capped_and_seeded():
    ml = small_ml(search="random", search_iter=3, random_forest={"grid": {"n_estimators": [5, 10], "max_depth": [2, 3, None]}})
    c1 = estimators.candidates("random_forest", ml)
    assert len(c1) == 3 and c1 == estimators.candidates("random_forest", ml)
    full = estimators.candidates("random_forest", small_ml(search="grid", random_forest=ml.random_forest.__dict__))
    assert len(full) == 6 and all(c in full for c in c1)
    assert estimators.candidates("random_forest", small_ml(random_forest=ml.random_forest.__dict__)) == []  # search: none


def test_bad_grid_is_a_params_error(table):
    with pytest.raises(ParamsError, match="ml.svm.grid: unknown key 'Cee'"):
        C.train("svm", table, small_ml(search="grid", svm={"grid": {"Cee": [1]}}), feature_set="x")
    with pytest.raises(ParamsError, match=r"ml.svm.grid.C: -1.*out of range"):
        C.train("svm", table, small_ml(search="grid", svm={"grid": {"C": [1, -1]}}), feature_set="x")
    with pytest.raises(ParamsError, match="non-empty list"):
        C.train("svm", table, small_ml(search="grid", svm={"grid": {"C": []}}), feature_set="x")


def test_data_errors(table):
    ml = small_ml()
    no_jazz_train = table[~((table["genre"] == "jazz") & (table["split"] != "test"))]
    with pytest.raises(DataError, match=r"genre\(s\) \['jazz'\] have no train tracks"):
        C.train("logreg", no_jazz_train, ml, feature_set="x")
    with pytest.raises(DataError, match=r"genre\(s\) \['jazz'\] have no train tracks"):  # holdout: val does not train
        C.train("logreg", table[~((table["genre"] == "jazz") & (table["split"] == "train"))],
                small_ml(validation="holdout"), feature_set="x")
    with pytest.raises(DataError, match="non-finite feature values.*mfcc4_mean"):
        C.train("logreg", table.assign(mfcc4_mean=np.inf), ml, feature_set="x")
    with pytest.raises(DataError, match="lacks column"):
        C.train("logreg", table.drop(columns=["genre"]), ml, feature_set="x")
    with pytest.raises(DataError, match="not numeric"):
        C.train("logreg", table.assign(mfcc1_mean="x"), ml, feature_set="x")
    two_folds = table.assign(fold=np.arange(len(table)) % 2)
    with pytest.raises(DataError, match=r"fold 0: no train tracks \(k-fold mode with ml.validation: holdout needs split.k >= 3"):
        C.train("logreg", two_folds, small_ml(validation="holdout"), feature_set="x")
    assert C.train("logreg", two_folds, ml, feature_set="x").metrics["per_fold"]["0"]["n_train"] == len(table) // 2


def test_track_level_metrics_average_rows_of_a_track():
    # two rows of track a (one right, one wrong with lower confidence) -> the track is right
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    m = C.track_metrics(probs, np.array([0, 0, 1]), ["a", "a", "b"], ["x", "y"])
    assert m["n"] == 2 and m["accuracy"] == 1.0


def test_modified_model_file_fails_the_card_hash(trained, tmp_path):
    """Only trusted types, but not the file the card was written for: refused."""
    from mgr.io import file_hash

    src = trained["logreg"][2]
    card = json.loads((src / classical_artifact.CARD_FILE).read_text())
    assert card["model_sha256"] == file_hash(src / classical_artifact.SKOPS_FILE)
    d = tmp_path / "logreg"
    d.mkdir()
    (d / classical_artifact.CARD_FILE).write_text(json.dumps(card))

    def edit(schema):  # a different, still valid and trusted, model: max_iter changed
        node = _first_node(schema, "sklearn.linear_model")
        assert node is not None
        node["content"]["content"]["max_iter"]["content"] = "7"

    _rewrite_schema(src / classical_artifact.SKOPS_FILE, d / classical_artifact.SKOPS_FILE, edit)
    with pytest.raises(ArtifactError, match="does not match the sha256 in its model card"):
        classical_artifact.load_native(d)
    # a card without a hash (hand-made) still gets every safety check, then loads
    (d / classical_artifact.CARD_FILE).write_text(json.dumps({k: v for k, v in card.items() if k != "model_sha256"}))
    assert classical_artifact.load_native(d).steps[1][1].max_iter == 7


def test_svm_grid_from_yaml_mixes_names_and_numbers():
    import yaml

    raw = yaml.safe_load("ml: {search: grid, svm: {grid: {C: [1, 3], gamma: [scale, 0.01]}}}")
    ml = params_from_dict(raw).ml
    combos = estimators.candidates("svm", ml)
    assert combos == [{"C": 1, "gamma": "scale"}, {"C": 1, "gamma": 0.01}, {"C": 3, "gamma": "scale"}, {"C": 3, "gamma": 0.01}]
    svc = estimators.build("svm", ml, block=estimators._block_with("svm", ml.svm, combos[1])).estimator.named_steps["svc"]
    assert svc.C == 1.0 and svc.gamma == 0.01 and svc.kernel == "rbf"
    bad = params_from_dict(yaml.safe_load("ml: {search: grid, svm: {grid: {gamma: [huge]}}}")).ml
    with pytest.raises(ParamsError, match="ml.svm.grid.gamma: 'huge' is not a valid value"):
        estimators.candidates("svm", bad)


@pytest.mark.parametrize("name", ML_MODELS)
def test_temperature_fitted_on_val_stored_and_applied(trained, table, name):
    """Each classical model gets a temperature fitted at train time on out-of-fold probabilities
    of inner CV over its training (all non-test) tracks,
    stored in its card and applied by the artifact's predict_proba (what evaluate and predict
    call); the ranking is unchanged and calibrated=False gives the raw ONNX probabilities."""
    from mgr.evaluation.calibration import apply_temperature

    o, card, model_dir = trained[name]
    disk = json.loads((model_dir / classical_artifact.CARD_FILE).read_text())
    cal = disk["calibration"]
    assert cal == o.card["calibration"] and cal["temperature"] > 0
    assert "inner cross-validation" in cal["method"] and cal["n_val_tracks"] == int((table["split"] != "test").sum())
    assert cal["val_nll_after"] <= cal["val_nll_before"] + 1e-9
    art = classical_artifact.load(model_dir)
    assert art.temperature == cal["temperature"]
    raw, tempered = art.predict_proba(table, calibrated=False), art.predict_proba(table)
    np.testing.assert_allclose(tempered, apply_temperature(raw, cal["temperature"]), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(tempered.argmax(axis=1), raw.argmax(axis=1))
    if cal["temperature"] != 1.0:
        assert np.abs(tempered - raw).max() > 1e-3


def test_some_classical_temperature_is_not_one(trained):
    assert any(trained[n][1]["calibration"]["temperature"] != 1.0 for n in ML_MODELS)


def test_temperature_from_out_of_fold_probabilities_without_val_rows():
    df = make_table(n_per_class=20)
    df.loc[df["split"] == "val", "split"] = "train"
    o = C.train("logreg", df, small_ml(validation="holdout"), feature_set="gtzan57")
    cal = o.card["calibration"]
    assert cal["temperature"] > 0 and "out-of-fold" in cal["method"]
    assert cal["n_val_tracks"] == int((df["split"] == "train").sum())
    assert o.card["val_metrics"] is None


def test_no_temperature_for_perfectly_separated_calibration_tracks():
    """Without val rows and with out-of-fold answers certain and right on every train track, the
    NLL has no optimum (it falls as T -> 0): no temperature is stored or applied."""
    df = make_table(n_per_class=6)
    df.loc[df["split"] != "test", "split"] = "train"
    cols = [c for c in df.columns if c.startswith("mfcc")]
    df[cols] = 0.0
    for i, g in enumerate(GENRES):  # each genre far apart on its own feature
        df.loc[df["genre"] == g, cols[i]] = 100.0
    o = C.train("logreg", df, small_ml(), feature_set="gtzan57")
    assert o.card["calibration"] is None



def test_onnx_export_is_the_same_bytes_from_any_run(tmp_path: Path) -> None:
    # converters name graphs with UUIDs and list the opsets in an order that varied from process to
    # process: the same model must still be the same file (its hash is in the card and dvc.lock)
    import onnx
    from sklearn.linear_model import LogisticRegression

    from mgr.models.export import canonicalize, export_sklearn

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    model = LogisticRegression(max_iter=200).fit(X, y)
    export_sklearn(model, 5, tmp_path / "a.onnx", sample=X[:4])
    export_sklearn(model, 5, tmp_path / "b.onnx", sample=X[:4])
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    proto = onnx.load(tmp_path / "a.onnx")
    assert len(proto.opset_import) >= 2
    opsets = [(o.domain, o.version) for o in proto.opset_import][::-1]
    del proto.opset_import[:]
    for domain, version in opsets:
        proto.opset_import.add(domain=domain, version=version)
    canonicalize(proto)
    assert proto.SerializeToString() == (tmp_path / "a.onnx").read_bytes()
