"""Temperature scaling (mgr.evaluation.calibration) and its use by the deep artifact."""

from __future__ import annotations

import numpy as np
import pytest

from mgr.evaluation.calibration import (
    apply_temperature,
    calibration_record,
    expected_calibration_error,
    fit_temperature,
)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_keeps_the_ranking_and_is_the_identity_at_one():
    p = _softmax(np.random.default_rng(0).normal(0, 2, (50, 5)))
    np.testing.assert_array_equal(apply_temperature(p, 1.0), p)
    for t in (0.3, 2.5):
        q = apply_temperature(p, t)
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))
    assert apply_temperature(p, 2.5).max(axis=1).mean() < p.max(axis=1).mean()  # softer


def test_fit_recovers_the_temperature_of_overconfident_outputs():
    """Labels drawn from softmax(z); the model reports softmax(3 z): the fitted T is about 3, and
    the tempered probabilities have a lower NLL and ECE than the raw ones."""
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, (4000, 4))
    y = np.array([rng.choice(4, p=row) for row in _softmax(z)])
    raw = _softmax(3.0 * z)
    t = fit_temperature(raw, y)
    assert 2.6 < t < 3.4
    rec = calibration_record(raw, y)
    assert rec["val_nll_after"] < rec["val_nll_before"] and rec["val_ece_after"] < rec["val_ece_before"]


def test_fit_on_track_means_and_degenerate_inputs():
    rng = np.random.default_rng(2)
    windows = _softmax(rng.normal(0, 1, (12, 3)))
    track = np.repeat([5, 9, 7], 4)  # three tracks, four windows each (any track ids)
    y = np.array([0, 2, 1])  # in np.unique(track) order: 5, 7, 9
    t = fit_temperature(windows, y, track)
    assert 0.05 <= t <= 20.0
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0


def test_ece_hand_computed():
    # two bins: confidence 0.9 (2 rows, 1 correct) and 0.6 (2 rows, 2 correct)
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * abs(0.9 - 0.5) + 0.5 * abs(0.6 - 1.0))


def test_deep_artifact_applies_the_card_temperature_unless_calibrated_false(tmp_path):
    """DeepArtifact.predict_windows tempers the genre head by the card's temperature;
    calibrated=False returns the network's raw softmax (evaluate reports ECE before/after)."""
    import json
    import shutil
    from pathlib import Path

    from mgr.models import deep

    fix = Path(__file__).resolve().parent / "data" / "predict" / "tiny_cnn"
    d = shutil.copytree(fix, tmp_path / "m")
    card = json.loads((d / "model.json").read_text())
    card["calibration"] = {"method": "test", "temperature": 2.5}
    (d / "model.json").write_text(json.dumps(card))
    art, plain = deep.load(d), deep.load(fix)
    X = np.random.default_rng(0).normal(-40, 12, (5, art.n_mels, art.window_frames)).astype(np.float32)
    raw = art.predict_windows(X, calibrated=False)["genre"]
    np.testing.assert_allclose(raw, plain.predict_windows(X, calibrated=False)["genre"], rtol=0, atol=1e-7)
    tempered = art.predict_windows(X)["genre"]
    np.testing.assert_allclose(tempered, apply_temperature(raw, 2.5), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(tempered.argmax(axis=1), raw.argmax(axis=1))
    assert np.abs(tempered - raw).max() > 1e-3
