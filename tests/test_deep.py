"""Every registry model builds, trains one step, saves, reloads with safe_mode=True, predicts the same."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

SHAPE = (32, 64, 1)


def _train_one_step(model, outputs, n=8, seed=0):
    from mgr.models.deep import compile_model

    rng = np.random.default_rng(seed)
    compile_model(model, 1e-3, outputs, jit_compile=False)
    X = rng.standard_normal((n,) + SHAPE).astype(np.float32)
    y = {}
    for o in outputs:
        k = int(model.get_layer(o).units)
        y[o] = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)] if o != "tags" else rng.integers(0, 2, (n, k)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(X, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "no weight changed"
    return X


def test_registry_matches_params():
    from mgr.models.deep import REGISTRY
    from mgr.params import DL_MODELS, DlParams

    assert tuple(REGISTRY) == DL_MODELS
    assert all(hasattr(DlParams(), n) for n in REGISTRY)


@pytest.mark.parametrize(
    "name",
    ["cnn2d", "pons_blackbox", "pons_time", "pons_freq", "pons_timefreq", "crnn", "crnn_lstm", "cnn_bigru", "tempo_genre"],
)
def test_model_builds_trains_saves_reloads(name, tmp_path):
    import keras

    from mgr.models.deep import build
    from mgr.params import DlModelParams

    mean = np.linspace(-40, -20, SHAPE[0]).astype(np.float32)
    std = np.full(SHAPE[0], 10.0, np.float32)
    tempo = 7 if name == "tempo_genre" else 0
    m = build(name, SHAPE, 4, n_tempo_classes=tempo, n_tags=3, params=DlModelParams(width=0.125, dropout=0.2),
              mean=mean, std=std)
    outputs = ["genre", "tags"] + (["tempo"] if tempo else [])
    assert sorted(m.output_names) == sorted(outputs)
    X = _train_one_step(m, outputs)
    path = tmp_path / "m.keras"
    m.save(path)
    with zipfile.ZipFile(path) as z:  # no Lambda layers: nothing executable in the config
        assert "Lambda" not in z.read("config.json").decode()
    m2 = keras.models.load_model(path, safe_mode=True)
    a = {k: np.asarray(v) for k, v in m(X, training=False).items()}  # eager: no predict-graph tracing
    b = {k: np.asarray(v) for k, v in m2(X, training=False).items()}
    assert set(a) == set(outputs)
    for k in outputs:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["genre"].sum(1), 1.0, rtol=1e-5)
    if tempo:
        assert a["tempo"].shape == (8, tempo)


def test_width_scales_parameters():
    from mgr.models.deep import build
    from mgr.params import DlModelParams

    small = build("crnn", SHAPE, 4, params=DlModelParams(width=0.125)).count_params()
    big = build("crnn", SHAPE, 4, params=DlModelParams(width=0.5)).count_params()
    assert big > 4 * small


def test_normalisation_inside_the_model():
    """A model built with mean/std equals one without, fed pre-normalised windows."""
    import keras

    from mgr.models.deep import build
    from mgr.params import DlModelParams

    rng = np.random.default_rng(1)
    mean = rng.uniform(-60, -10, SHAPE[0]).astype(np.float32)
    std = rng.uniform(2, 12, SHAPE[0]).astype(np.float32)
    p = DlModelParams(width=0.125)
    keras.utils.set_random_seed(0)
    a = build("pons_freq", SHAPE, 3, params=p, mean=mean, std=std)
    keras.utils.set_random_seed(0)
    b = build("pons_freq", SHAPE, 3, params=p)
    X = rng.normal(-35, 8, (4,) + SHAPE).astype(np.float32)
    Xn = (X - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(np.asarray(a(X)["genre"]), np.asarray(b(Xn)["genre"]), rtol=1e-4, atol=1e-5)


def _artifact(tmp_path, **card_over):
    from mgr.models.deep import build, tempo_bins
    from mgr.models.training import save_artifact

    m = build("tempo_genre", SHAPE, 3, n_tempo_classes=5, params=__import__("mgr.params").params.DlModelParams(width=0.125))
    card = {
        "name": "tempo_genre", "kind": "deep", "labels": ["a", "b", "c"], "frontend": {"n_mels": 32, "sr": 8000},
        "window_frames": 64, "input_shape": list(SHAPE), "outputs": ["genre", "tempo"],
        "tempo_bins": tempo_bins("10bpm", 50, 100), "tag_vocab": [],
    }
    card.update(card_over)
    save_artifact(m, card, tmp_path / "tg")
    return m, tmp_path / "tg"


def test_load_checks_the_card(tmp_path):
    from mgr.errors import ArtifactError
    from mgr.models.deep import load

    m, d = _artifact(tmp_path)
    art = load(d)
    X = np.random.default_rng(0).normal(size=(3, 32, 64)).astype(np.float32)
    out = art.predict_windows(X)
    np.testing.assert_allclose(out["genre"], m.predict(X[..., None], verbose=0)["genre"], rtol=1e-5, atol=1e-6)
    assert out["tempo_bpm"].shape == (3,) and np.all((out["tempo_bpm"] >= 55) & (out["tempo_bpm"] <= 95))
    with pytest.raises(ArtifactError, match="windows must be"):
        art.predict_windows(X[:, :, :10])

    card = json.loads((d / "model.json").read_text())
    for change, msg in (({"labels": ["a", "b"]}, "genre head"), ({"outputs": ["genre"]}, "outputs"),
                        ({"window_frames": 50}, "input shape"), ({"kind": "classical"}, "not a deep")):
        (d / "model.json").write_text(json.dumps({**card, **change}))
        with pytest.raises(ArtifactError, match=msg):
            load(d)
    (d / "model.json").write_text(json.dumps(card))
    assert card["onnx_file"] == "model.onnx" and len(card["onnx_sha256"]) == 64 and len(card["model_sha256"]) == 64
    keras_bytes = (d / "model.keras").read_bytes()
    (d / "model.keras").write_bytes(b"not a zip")  # the native file changed: the artifact is refused
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load(d)
    (d / "model.keras").write_bytes(keras_bytes)
    from mgr.io import file_hash

    (d / "model.onnx").write_bytes(b"not a protobuf")  # corrupt, with a matching card hash
    (d / "model.json").write_text(json.dumps({**card, "onnx_sha256": file_hash(d / "model.onnx")}))
    with pytest.raises(ArtifactError, match="not a valid ONNX model"):
        load(d)
    (d / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="not found"):
        load(d)
    with pytest.raises(ArtifactError, match="not a model directory"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no model.json"):
        load(tmp_path / "empty")
