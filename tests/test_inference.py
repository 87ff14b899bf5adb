"""mgr.inference: ONNX export (Keras, scikit-learn, XGBoost) against the source models for every
registry model, the hash-checked onnxruntime wrapper, and evaluate vs predict on one runtime."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mgr.errors import ArtifactError
from mgr.inference.runtime import InferenceError, OnnxModel

ATOL = 1e-4
SHAPE = (32, 44, 1)
FIX = Path(__file__).resolve().parent / "data" / "predict"
SR = 22050


def _shape(name: str) -> tuple[int, int, int]:
    from mgr.models import deep

    # a pretrained model takes the windows its weights were trained on (musicnn: 96 mels x 187 frames)
    return (96, deep.PRETRAINED_WINDOW_FRAMES[name], 1) if name in deep.PRETRAINED else SHAPE


def _tiny_deep(name: str, seed: int = 0):
    """Registry model ``name``, tiny, with mean/std normalisation, tempo and tags heads and
    non-trivial batch-norm statistics (random weights; a pretrained backbone keeps its weights)."""
    import keras

    from mgr.models import deep
    from mgr.params import DlModelParams, TransferParams

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    shape = _shape(name)
    params = TransferParams() if name in deep.PRETRAINED else DlModelParams(width=0.25)
    m = deep.build(name, shape, 4, n_tempo_classes=3, n_tags=5, params=params,
                   mean=rng.normal(-40, 5, shape[0]), std=rng.uniform(5, 15, shape[0]))
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape).astype("float32"))
    return m


# ------------------------------------------------------------------------- deep export
def _deep_names() -> list[str]:
    from mgr.models.deep import REGISTRY

    return list(REGISTRY)


@pytest.mark.slow
@pytest.mark.parametrize("name", _deep_names())
def test_every_deep_registry_model_exports_to_onnx_equal_to_keras(name, tmp_path):
    from mgr.models.export import export_keras

    m = _tiny_deep(name)
    shape = _shape(name)
    path = tmp_path / "m.onnx"
    export_keras(m, path)
    onx = OnnxModel(path, threads=1)
    assert onx.input_names == ["input"] and onx.input_shape == (None, *shape)
    assert sorted(onx.output_names) == sorted(m.output_names) == ["genre", "tags", "tempo"]
    rng = np.random.default_rng(1)
    X = (rng.uniform(0, 3, (7, *shape)) if shape != SHAPE else rng.normal(-40, 10, (7, *shape))).astype("float32")
    ref = {k: np.asarray(v) for k, v in m(X, training=False).items()}
    got = onx.run(X)
    worst = max(float(np.abs(got[k] - ref[k]).max()) for k in ref)
    print(f"{name}: max |onnx - keras| = {worst:.3g}")
    assert worst <= ATOL, (name, worst)
    # batching inside run() changes nothing; the batch dimension is dynamic
    small = OnnxModel(path, threads=1, batch_size=2).run(X)
    for k in ref:
        np.testing.assert_allclose(small[k], got[k], rtol=0, atol=1e-6)
    assert onx.run(X[:1])["genre"].shape == (1, 4)


def test_export_keras_is_generic_list_outputs_and_rank3_input(tmp_path):
    """Not only the registry: a rank-3 input and list outputs keep the Keras output names."""
    import keras

    from mgr.models.export import export_keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((20, 8), name="mel")
    h = keras.layers.Conv1D(6, 3, padding="same", activation="relu", name="conv")(inp)
    pen = keras.layers.GlobalAveragePooling1D(name="penultimate")(h)
    tag = keras.layers.Dense(4, activation="sigmoid", name="taggram")(pen)
    m = keras.Model(inp, [tag, pen])
    X = np.random.default_rng(0).normal(size=(5, 20, 8)).astype("float32")
    export_keras(m, tmp_path / "g.onnx", sample=X)
    onx = OnnxModel(tmp_path / "g.onnx")
    assert onx.input_names == ["input"] and onx.input_shape == (None, 20, 8)
    assert sorted(onx.output_names) == ["penultimate", "taggram"]
    ref = m(X, training=False)
    got = onx.run(X)
    np.testing.assert_allclose(got["taggram"], np.asarray(ref[0]), atol=ATOL)
    np.testing.assert_allclose(got["penultimate"], np.asarray(ref[1]), atol=ATOL)


def test_deep_artifact_writes_onnx_and_hashes(tmp_path):
    from mgr.io import file_hash
    from mgr.models.deep import load, write_artifact

    m = _tiny_deep("tempo_genre")
    card = {"name": "tg", "kind": "deep", "labels": ["a", "b", "c", "d"], "frontend": {"n_mels": 32},
            "window_frames": SHAPE[1], "input_shape": list(SHAPE), "outputs": ["genre", "tags", "tempo"],
            "tempo_bins": {"kind": "10bpm", "edges": [60, 70, 80, 90], "centres": [65, 75, 85]}, "tag_vocab": list("vwxyz")}
    written = write_artifact(m, card, tmp_path / "tg")
    assert written["onnx_file"] == "model.onnx" and written["model_file"] == "model.keras"
    assert written["onnx_sha256"] == file_hash(tmp_path / "tg" / "model.onnx")
    assert written["model_sha256"] == file_hash(tmp_path / "tg" / "model.keras")
    art = load(tmp_path / "tg")
    X = np.random.default_rng(2).normal(-40, 10, (5, 32, 44)).astype("float32")
    out = art.predict_windows(X)
    ref = m(X[..., None], training=False)
    for k in ("genre", "tags", "tempo"):
        np.testing.assert_allclose(out[k], np.asarray(ref[k]), atol=ATOL)
    assert out["tempo_bpm"].shape == (5,)


# -------------------------------------------------------------------- classical export
def _table(n_per_class: int = 25, n_classes: int = 4, seed: int = 0, scale: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = 12
    centres = rng.normal(scale=1.0, size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centres[y] + rng.normal(size=(y.size, d))
    if scale:  # feature scales like gtzan57's (1e-4 .. 1e5)
        X = X * np.logspace(-4, 5, d) + np.logspace(-3, 5, d)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(d)])
    split = np.where(rng.random(y.size) < 0.2, "val", "train")
    df.insert(0, "track_id", [f"t{i:04d}" for i in range(y.size)])
    df.insert(1, "split", split)
    df.insert(2, "genre", [f"g{c}" for c in y])
    return df


def _ml():
    from mgr.params import params_from_dict

    return params_from_dict({"ml": {"xgboost": {"n_estimators": 40, "max_depth": 3},
                                    "random_forest": {"n_estimators": 30}, "workers": 1}}).ml


@pytest.mark.slow
@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("name", ["svm", "xgboost", "logreg", "random_forest"])
def test_every_classical_registry_model_onnx_equals_native(name, n_classes, tmp_path):
    from mgr.models import classical as C
    from mgr.models import classical_artifact, estimators

    assert name in estimators.REGISTRY
    df = _table(n_classes=n_classes)
    o = C.train(name, df, _ml(), feature_set="test")
    card = classical_artifact.save(o.model, tmp_path / name, o.card, sample=o.sample)
    assert card["onnx_file"] == "model.onnx" and len(card["onnx_sha256"]) == 64
    art = classical_artifact.load(tmp_path / name)
    X = df[card["feature_columns"]].to_numpy()
    ref = o.model.predict_proba(X)
    got = art.predict_proba(df, calibrated=False)  # the model's own probabilities (no temperature)
    worst = float(np.abs(got - ref).max())
    print(f"{name} ({n_classes} classes): max |onnx - native| = {worst:.3g}")
    assert got.shape == ref.shape and worst <= ATOL, worst
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99
    # k-fold test metrics go through the same export
    np.testing.assert_allclose(C.onnx_proba(o.model, X), got, atol=1e-6)


def test_classical_registry_is_covered():
    from mgr.models import estimators

    assert set(estimators.REGISTRY) == {"svm", "xgboost", "logreg", "random_forest"}


def test_svm_keeps_every_training_row_and_the_svc_decision():
    """The svm is one SVC fitted on all train rows (temperature scaling keeps its argmax), so on
    small training sets it predicts like a plain RBF SVC, unlike the former 3-fold sigmoid
    ensemble. Synthetic 10-class, 57-feature blobs, 4 seeds x 5 folds (80 train rows per fold)."""
    import warnings

    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from mgr.models import estimators
    from mgr.params import MlParams

    ml = MlParams()

    def plain():
        return Pipeline([("scale", StandardScaler()), ("svc", SVC(C=ml.svm.C, gamma=ml.svm.gamma, random_state=ml.seed))])

    acc = {"svm": [], "plain": [], "old_sigmoid_ensemble": []}
    agree = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        y = np.repeat(np.arange(10), 10)
        X = (rng.normal(scale=0.32, size=(10, 57))[y] + rng.normal(size=(100, 57))) * rng.uniform(0.01, 1000, 57)
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                svm = estimators.build("svm", ml).fit(X[tr], y[tr])
                ref = plain().fit(X[tr], y[tr])
                old = CalibratedClassifierCV(plain(), method="sigmoid", cv=3).fit(X[tr], y[tr])
            p = svm.predict_proba(X[te]).argmax(1)
            acc["svm"].append((p == y[te]).mean())
            acc["plain"].append((ref.predict(X[te]) == y[te]).mean())
            acc["old_sigmoid_ensemble"].append((old.predict_proba(X[te]).argmax(1) == y[te]).mean())
            agree.append((p == ref.predict(X[te])).mean())
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    print("svm comparison (mean accuracy over 20 folds):", mean, "agreement with plain SVC:", float(np.mean(agree)))
    assert float(np.mean(agree)) >= 0.98
    assert mean["svm"] >= mean["plain"] - 0.01
    assert mean["svm"] > mean["old_sigmoid_ensemble"]


# ------------------------------------------------------------------------ the runtime
def _log_model(path: Path) -> Path:
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Log", ["input"], ["y"])], "log",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


def test_onnx_model_hash_shape_and_non_finite_checks(tmp_path):
    from mgr.io import file_hash

    p = _log_model(tmp_path / "log.onnx")
    m = OnnxModel(p, sha256=file_hash(p))
    assert m.input_shape == (None, 3) and m.output_names == ["y"]
    np.testing.assert_allclose(m.run(np.ones((600, 3)))["y"], 0.0)  # > one batch
    OnnxModel(p, sha256="sha256:" + file_hash(p))  # the prefixed form is accepted too
    with pytest.raises(InferenceError, match=r"not finite \(NaN/inf\) for 1 of 2 inputs") as e:
        m.run(np.array([[1.0, 2.0, 3.0], [1.0, -1.0, 1.0]]))
    assert isinstance(e.value, ArtifactError) and "\n" not in str(e.value)
    with pytest.raises(ArtifactError, match=r"must have shape \('n', 3\)"):
        m.run(np.ones((2, 4)))
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        OnnxModel(p, sha256="0" * 64)
    with pytest.raises(ArtifactError, match="not found"):
        OnnxModel(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ArtifactError, match="not a valid ONNX model") as e:
        OnnxModel(tmp_path / "bad.onnx")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["deep", "classical"])
def test_tampered_onnx_is_refused_in_one_line(kind, tmp_path):
    from mgr.inference.predictors import load_predictor

    if kind == "deep":
        from mgr.models.deep import load

        d = shutil.copytree(FIX / "tiny_cnn", tmp_path / "m")
    else:
        from mgr.models import classical as C
        from mgr.models import classical_artifact

        load = classical_artifact.load
        o = C.train("logreg", _table(), _ml(), feature_set="test")
        d = tmp_path / "m"
        classical_artifact.save(o.model, d, o.card, sample=o.sample)
    load(d)  # intact: fine
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    (d / "model.onnx").write_bytes(bytes(data))
    for opener in (load, load_predictor):
        with pytest.raises(ArtifactError, match="model.onnx does not match the sha256 in its model card") as e:
            opener(d)
        assert "\n" not in str(e.value)
    (d / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="not found"):
        load(d)
    card = json.loads((d / "model.json").read_text())
    (d / "model.json").write_text(json.dumps({**card, "onnx_file": "../x.onnx"}))
    with pytest.raises(ArtifactError, match="onnx_file must be a file name inside"):
        load(d)


# ------------------------------------------------------------- evaluate == predict
def _clip(seconds: float, seed: int = 0, f0: float = 330.0, bpm: float = 120.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    beat = (np.mod(t, 60.0 / bpm) < 0.03).astype(np.float32)
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (0.3 + beat) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


class _Spy:
    """Wraps an artifact and records the probabilities evaluate scores with (evaluate asks for the
    raw ones and calibrates them with the artifact's temperature: the calibrated ones are kept)."""

    def __init__(self, art):
        self.art, self.calls = art, []

    def __getattr__(self, k):
        return getattr(self.art, k)

    def predict_windows(self, X, *a, **kw):
        out = self.art.predict_windows(X, *a, **kw)
        rec = dict(out)
        if kw.get("calibrated", True) is False:
            rec["genre"] = self.art.calibrate(out["genre"])
        self.calls.append(rec)
        return out

    def predict_proba(self, X, *a, **kw):
        out = self.art.predict_proba(X, *a, **kw)
        self.calls.append(self.art.calibrate(out) if kw.get("calibrated", True) is False else out)
        return out


@pytest.mark.slow
def test_evaluate_and_predict_give_the_same_probabilities_deep(tmp_path):
    """evaluate_deep (store windows) and `mgr predict` (streamed front end) on one file and one
    model: the same model object type, the same probabilities."""
    from mgr.evaluation.scoring import evaluate_deep
    from mgr.features.extract import load_inputs
    from mgr.features.store import SpectrogramStore, build_store
    from mgr.inference.predictors import load_predictor
    from mgr.models.deep import load
    from mgr.params import AudioParams, SpectrogramParams

    path = tmp_path / "song.wav"
    sf.write(path, _clip(4.0), SR)
    sf.write(tmp_path / "other.wav", _clip(3.0, seed=1, f0=200.0), SR)  # a train track (store statistics)
    pd.DataFrame([{"track_id": t, "path": p, "genre": g, "duration_s": 4.0, "sample_rate": SR, "channels": 1}
                  for t, p, g in (("t0", path.name, "rock"), ("t1", "other.wav", "blues"))]).to_csv(
        tmp_path / "tracks.csv", index=False)
    pd.DataFrame({"track_id": ["t0", "t1"], "split": ["test", "train"]}).to_csv(tmp_path / "split.csv", index=False)
    store_path = tmp_path / "spec.h5"
    build_store(load_inputs(tmp_path / "tracks.csv", tmp_path / "split.csv"), AudioParams(sample_rate=SR),
                SpectrogramParams(n_fft=1024, hop_length=512, n_mels=32), store_path, workers=1, progress=False)
    model = FIX / "tiny_tempo"
    spy = _Spy(load(model))
    with SpectrogramStore(store_path) as store:
        window_s = spy.window_frames * store.frontend["hop"] / store.frontend["sr"]
        res = evaluate_deep(spy, store, ["t0"], window_s=window_s, overlap=0.5)
    ev = np.concatenate([c["genre"] for c in spy.calls]).mean(axis=0)
    ev_tempo = np.concatenate([c["tempo_bpm"] for c in spy.calls])
    pred = load_predictor(model, top_k=3, overlap=0.5)
    assert type(pred.model) is type(spy.art)  # the very loader evaluate uses
    r = pred.predict_file(path)
    assert r.n_windows == sum(len(c["genre"]) for c in spy.calls)
    got = dict(r.top_k)
    diffs = [abs(got[lab] - ev[i]) for i, lab in enumerate(spy.labels)]
    print("deep: max |predict - evaluate| probability:", max(diffs))
    assert max(diffs) < 1e-4
    assert res["_scores"]["mean"][0][0] == spy.labels.index(r.genre)
    assert np.isfinite(ev_tempo).all() and r.tempo_source == "model"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["svm", "xgboost"])
def test_evaluate_and_predict_give_the_same_probabilities_classical(name, tmp_path):
    from mgr.audio.decode import load_audio
    from mgr.evaluation.scoring import evaluate_classical
    from mgr.features.tables import extract_features
    from mgr.inference.predictors import load_predictor
    from mgr.models import classical as C
    from mgr.models import classical_artifact

    rows = []
    for g, (f0, bpm) in {"low": (150.0, 90.0), "high": (900.0, 140.0)}.items():
        for i in range(6):
            y = _clip(2.5, seed=i, f0=f0 + 25 * i, bpm=bpm)
            rows.append({"track_id": f"{g}{i}", "split": "train", "genre": g, **extract_features(y, SR, "gtzan57")})
    o = C.train(name, pd.DataFrame(rows), _ml(), feature_set="gtzan57")
    d = tmp_path / name
    classical_artifact.save(o.model, d, o.card, sample=o.sample)
    path = tmp_path / "q.wav"
    sf.write(path, _clip(3.0, seed=9, f0=880.0, bpm=140.0), SR)
    feats = extract_features(load_audio(path, sr=SR), SR, "gtzan57")
    table = pd.DataFrame([{"track_id": "q", "split": "test", "genre": "high", **feats}])
    spy = _Spy(classical_artifact.load(d))
    res = evaluate_classical(spy, table, ["q"])
    ev = spy.calls[0][0]
    r = load_predictor(d, top_k=2, gate=False).predict_file(path)  # (a test tone: the no-music gate would refuse it)
    got = dict(r.top_k)
    diffs = [abs(got[lab] - ev[i]) for i, lab in enumerate(spy.labels)]
    print(f"{name}: max |predict - evaluate| probability:", max(diffs))
    assert max(diffs) < 1e-6 and res["predictions"][0][2] == r.genre


# ------------------------------------------------------------------------ cold start
def test_classical_predict_imports_no_heavy_library(tmp_path):
    """Loading and running a classical artifact (ONNX) imports neither scikit-learn nor XGBoost,
    nor TensorFlow/Keras."""
    from mgr.models import classical as C
    from mgr.models import classical_artifact

    o = C.train("xgboost", _table(), _ml(), feature_set="test")
    d = tmp_path / "xgb"
    classical_artifact.save(o.model, d, o.card, sample=o.sample)
    X = _table()[o.card["feature_columns"]].to_numpy()[:3].tolist()
    code = (
        "import sys\nfrom mgr.models import classical_artifact\nimport mgr.inference.predict\n"
        f"p = classical_artifact.load({str(d)!r}).predict_proba({X!r})\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'xgboost', 'skops', 'librosa', 'tf2onnx', 'skl2onnx') if m in sys.modules]\n"
        "print(p.shape, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(3, 4) []"
