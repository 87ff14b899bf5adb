"""Calibrated tempo confidence (mgr.tempo.calibration): answers with confidence >= c are right
(Acc1) at least c of the time on data the map was not fitted on; malformed maps are refused;
predict reports no tempo under MIN_CONFIDENCE."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mgr.errors import ArtifactError
from mgr.tempo import calibration as C


def _draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An over-confident estimator: raw confidence r, right with probability r ** 4."""
    raw = rng.beta(2.0, 1.2, n)
    return raw, rng.random(n) < raw ** 4


def test_isotonic_map_makes_confidence_a_lower_bound_on_accuracy():
    rng = np.random.default_rng(0)
    raw, ok = _draw(400, rng)
    before = C.reliability(raw, ok)
    assert not before["holds"]  # the raw confidence over-claims
    rec = C.fit(raw, ok)
    assert rec["n"] == 400 and len(rec["x"]) == len(rec["y"]) and np.all(np.diff(rec["y"]) >= 0)
    raw2, ok2 = _draw(4000, rng)  # fresh answers from the same estimator
    after = C.reliability(C.apply(rec, raw2), ok2)
    assert after["holds"], after
    # and it does not just say "0" to everything: some answers keep a high confidence
    assert after["levels"]["0.5"]["share"] > 0.1


def test_calibrate_fits_on_validation_and_reports_every_set():
    rng = np.random.default_rng(1)
    sets = {"validation": (np.arange(300)[:, None], None), "heldout_styles": (np.arange(200)[:, None], None)}
    draws = {k: _draw(len(X), rng) for k, (X, _) in sets.items()}
    # predict(X) -> (bpm, raw): the estimate is right (= the reference) exactly when the draw says so
    ref = {k: np.full(len(X), 120.0) for k, (X, _) in sets.items()}

    def predict(X):
        k = "validation" if len(X) == 300 else "heldout_styles"
        raw, ok = draws[k]
        return np.where(ok, 120.0, 150.0), raw

    rec, rep = C.calibrate(predict, {k: (X, ref[k]) for k, (X, _) in sets.items()})
    assert rec is not None and set(rep) == {"validation", "heldout_styles"}
    assert rep["validation"]["holds"]
    assert C.calibrate(predict, {"heldout_styles": (sets["heldout_styles"][0], ref["heldout_styles"])})[0] is None


@pytest.mark.parametrize("bad", [None, {}, {"version": 1, "x": [0.1, 0.2], "y": [0.5]},
                                 {"version": 1, "x": [0.2, 0.1], "y": [0.1, 0.2]},
                                 {"version": 1, "x": [0.1, 0.2], "y": [0.6, 0.2]},
                                 {"version": 1, "x": [0.1, "a"], "y": [0.1, 0.2]},
                                 {"version": 1, "x": [0.1, 0.2], "y": [0.1, 1.5]}])
def test_malformed_calibration_is_refused(bad):
    with pytest.raises(ArtifactError, match="confidence_calibration is malformed"):
        C.check(bad)


@pytest.fixture(scope="module")
def tempo_dir(tmp_path_factory):
    """A tempo estimator directory whose card has a calibration map (the model: a tiny random one)."""
    root = tmp_path_factory.mktemp("tempo")
    import keras

    from mgr.cards import CARD_FILE
    from mgr.io import file_hash, write_json
    from mgr.models.export import export_keras
    from mgr.tempo import features as F
    from mgr.tempo.model import build

    keras.utils.set_random_seed(0)
    model = build(width=4, dropout=0.0, seed=0)
    X = np.zeros((2, F.N_BINS, F.N_CHANNELS), np.float32)
    export_keras(model, root / "model.onnx", sample=X)
    card = {"kind": "tempo", "name": "tempo", "onnx_file": "model.onnx", "sha256": file_hash(root / "model.onnx"),
            "output": {"name": "tempo", "grid": {"bpm_min": F.BPM_MIN, "bins_per_octave": F.BINS_PER_OCTAVE,
                                                 "n_bins": F.N_BINS}},
            "sample_rate": 22050, "beats_dsp_on_validation": True,
            # every raw confidence maps to 0.3: below MIN_CONFIDENCE
            "confidence_calibration": {"version": 1, "x": [0.0, 1.0], "y": [0.3, 0.3], "n": 2}}
    write_json(root / CARD_FILE, card)
    return root


def test_predict_reports_no_tempo_under_min_confidence(tempo_dir, tmp_path):
    import soundfile as sf

    from mgr.inference.nonmusic import music
    from mgr.inference.output import Prediction, to_json_line
    from mgr.tempo.estimate import TempoChoice

    wav = tmp_path / "m.wav"
    sf.write(wav, music(8.0, 22050, -20, np.random.default_rng(0), "rock"), 22050)
    pred = Prediction(str(wav), "rock", [("rock", 0.9)], 100.0, "model", music=True)
    r = TempoChoice("learned", tempo_dir).apply(pred, wav)
    assert r.tempo_bpm is None and r.tempo_confidence == pytest.approx(0.3)
    obj = json.loads(to_json_line(r))
    assert obj["tempo_bpm"] is None and obj["tempo_error"].startswith("tempo not estimated: confidence 0.30 is below 0.5")
    # a file the gate refused keeps its null tempo and no estimator runs
    refused = Prediction(str(wav), None, [], None, "no-music", music=False, reason="no music detected: x")
    assert TempoChoice("learned", tempo_dir).apply(refused, wav).tempo_estimator is None
    # a card without the map: the raw confidence, no abstention
    plain = tmp_path / "plain"
    shutil.copytree(tempo_dir, plain)
    card = json.loads((plain / "model.json").read_text())
    del card["confidence_calibration"]
    (plain / "model.json").write_text(json.dumps(card))
    r2 = TempoChoice("learned", plain).apply(Prediction(str(wav), "rock", [("rock", 0.9)], 100.0, "model"), wav)
    assert r2.tempo_bpm is not None
    # a malformed map is refused when the estimator is opened
    card["confidence_calibration"] = {"version": 1, "x": [1.0, 0.0], "y": [0.1, 0.2]}
    (plain / "model.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError):
        TempoChoice("learned", plain)


@pytest.mark.slow  # the tiny pipeline (shared with test_pipeline)
def test_calibration_map_in_a_real_card_is_usable(tiny_project: Path):
    """The tempo card that train-tempo writes (the tiny pipeline's) carries a well-formed map."""
    card = json.loads((tiny_project / "models" / "tempo" / "model.json").read_text())
    C.check(card["confidence_calibration"])
