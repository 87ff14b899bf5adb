"""The light (NumPy-only) inference form of classical models equals scikit-learn's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mgr.errors import ArtifactError
from mgr.models import classical
from mgr.params import MlParams, RandomForestParams, SvmParams


def _table(n_classes: int, n_per: int = 30, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (n_classes, d))
    X = np.concatenate([c + rng.normal(0, 1.5, (n_per, d)) for c in centres])
    X *= rng.uniform(0.1, 50, d)  # unequal scales: the scaler matters
    X += rng.uniform(-100, 100, d)
    y = np.repeat(np.arange(n_classes), n_per)
    return X, y, rng


def _save(model, tmp_path, n_classes: int, d: int, name: str):
    card = {"name": name, "labels": [f"g{i}" for i in range(n_classes)],
            "feature_columns": [f"f{i}" for i in range(d)], "feature_set": "test"}
    return classical.save(model, tmp_path / name, card)


@pytest.mark.parametrize("n_classes,cv,C,gamma", [(5, 3, 1.0, "scale"), (3, 4, 10.0, 0.05), (2, 2, 0.5, "scale")])
def test_light_svm_equals_sklearn(tmp_path, n_classes, cv, C, gamma):
    model = classical.build("svm", MlParams(), block=SvmParams(C=C, gamma=gamma, calibration_cv=cv))
    X, y, rng = _table(n_classes)
    model.fit(X, y)
    card = _save(model, tmp_path, n_classes, X.shape[1], "svm")
    assert card["light_file"] == classical.LIGHT_FILE and len(card["light_sha256"]) == 64
    light = classical.load_light(tmp_path / "svm")
    assert light is not None and light.kind == "svm" and int(light.arrays["n_members"]) == cv
    Xt = np.concatenate([X[::3] + rng.normal(0, 3.0, X[::3].shape), rng.normal(0, 200, (20, X.shape[1]))])
    ref = model.predict_proba(Xt)
    got = light.predict_proba(Xt)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert np.array_equal(got.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("n_classes", [2, 6])
def test_light_logreg_equals_sklearn(tmp_path, n_classes):
    model = classical.build("logreg", MlParams())
    X, y, rng = _table(n_classes, seed=n_classes)
    model.fit(X, y)
    _save(model, tmp_path, n_classes, X.shape[1], "logreg")
    light = classical.load_light(tmp_path / "logreg")
    assert light is not None and light.kind == "logreg"
    Xt = X + rng.normal(0, 5.0, X.shape)
    np.testing.assert_allclose(light.predict_proba(Xt), model.predict_proba(Xt), rtol=0, atol=1e-6)


def test_other_models_have_no_light_form_and_tampering_is_refused(tmp_path):
    X, y, _ = _table(3, n_per=10)
    rf = classical.build("random_forest", MlParams(), block=RandomForestParams(n_estimators=5)).fit(X, y)
    card = _save(rf, tmp_path, 3, X.shape[1], "rf")
    assert "light_file" not in card and classical.load_light(tmp_path / "rf") is None

    lr = classical.build("logreg", MlParams()).fit(X, y)
    _save(lr, tmp_path, 3, X.shape[1], "logreg")
    d = tmp_path / "logreg"
    with np.load(d / classical.LIGHT_FILE, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef"] = arrays["coef"] * 1.01  # a subtly altered model
    np.savez(d / classical.LIGHT_FILE, **arrays)
    with pytest.raises(ArtifactError, match="sha256"):
        classical.load_light(d)
    # a pickle-bearing npz with a matching hash is still refused (allow_pickle=False)
    np.savez(d / classical.LIGHT_FILE, kind=np.array("logreg"), obj=np.array([{"a": 1}], dtype=object))
    from mgr.utils import file_hash

    card = json.loads((d / "model.json").read_text())
    card["light_sha256"] = file_hash(d / classical.LIGHT_FILE)
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="plain NumPy"):
        classical.load_light(d)


def test_loading_the_light_form_imports_no_sklearn(tmp_path):
    X, y, _ = _table(3, n_per=10)
    _save(classical.build("logreg", MlParams()).fit(X, y), tmp_path, 3, X.shape[1], "logreg")
    code = (
        "import sys; from mgr.models import classical as c; m = c.load_light(sys.argv[1]); "
        "p = m.predict_proba([[0.0] * 8]); assert abs(p.sum() - 1) < 1e-9; "
        "bad = [k for k in sys.modules if k.split('.')[0] in ('sklearn', 'skops', 'scipy', 'librosa')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "logreg")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_classical_predict_uses_the_light_form_without_sklearn_or_librosa(tmp_path):
    """`mgr predict` with an svm: same probabilities as the scikit-learn route, and the light
    route imports neither scikit-learn, skops, librosa nor numba."""
    import soundfile as sf

    from mgr.features import feature_names

    cols = feature_names("gtzan57")
    X, y, _ = _table(4, n_per=15, d=len(cols), seed=7)
    model = classical.build("svm", MlParams(), block=SvmParams(calibration_cv=2)).fit(X, y)
    card = {"name": "svm", "labels": ["a", "b", "c", "d"], "feature_columns": cols, "feature_set": "gtzan57",
            "audio": {"sample_rate": 22050}}
    classical.save(model, tmp_path / "svm", card)
    t = np.arange(22050 * 2) / 22050
    sf.write(tmp_path / "x.wav", (0.3 * np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.5) < 0.1)).astype(np.float32), 22050)
    code = (
        "import sys, json\nfrom pathlib import Path\nfrom mgr.predict import load_predictor\n"
        "p = load_predictor(Path(sys.argv[1]), top_k=4)\nr = p.predict_file(Path(sys.argv[2]))\n"
        "heavy = [m for m in ('sklearn', 'skops', 'librosa', 'numba', 'tensorflow') if m in sys.modules]\n"
        "print(json.dumps([p.runtime, dict(r.top_k), r.tempo_bpm, heavy]))\n"
    )
    runs = {}
    for rt in ("", "sklearn"):
        env = {**__import__("os").environ, "MGR_RUNTIME": rt}
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "svm"), str(tmp_path / "x.wav")],
                             capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        runs[rt] = json.loads(out.stdout.strip().splitlines()[-1])
    light, ref = runs[""], runs["sklearn"]
    assert light[0] == "numpy" and light[3] == [] and ref[0] == "sklearn"
    assert light[1].keys() == ref[1].keys()
    for k in ref[1]:
        assert light[1][k] == pytest.approx(ref[1][k], abs=2e-6)  # top_k probs are rounded to 1e-6
    assert light[2] == ref[2] and 100 < light[2] < 140  # DSP tempo of 120 BPM pulses


def test_a_replaced_skops_file_is_refused_even_on_the_light_route(tmp_path):
    X, y, _ = _table(3, n_per=10)
    _save(classical.build("logreg", MlParams()).fit(X, y), tmp_path, 3, X.shape[1], "logreg")
    assert classical.load_light(tmp_path / "logreg") is not None
    (tmp_path / "logreg" / classical.SKOPS_FILE).write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(ArtifactError, match="sha256"):
        classical.load_light(tmp_path / "logreg")
