"""The out-of-distribution check (mgr.models.distribution): a model's card records its training
distribution; predict flags inputs far from it (in_distribution: false, in JSON, CSV and the
table) and abstains on them when --min-confidence is set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgr.errors import ArtifactError
from mgr.inference import nonmusic
from mgr.models import distribution as D

SR = 22050
FIX = Path(__file__).resolve().parent / "data" / "predict"
STYLES = ("rock", "classical", "disco", "jazz")


def test_threshold_sits_above_the_training_tracks_and_flags_shifted_ones():
    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(0.5, 3.0, 20))
    X = rng.multivariate_normal(np.zeros(20), cov, 300)
    rec = D.fit(X[:240], X[240:], kind="features")
    assert rec["n_train"] == 240 and rec["n_val"] == 60 and rec["threshold"] == pytest.approx(D.MARGIN * rec["reference_score_at_quantile"], rel=1e-4)
    dist = D.Distribution(json.loads(json.dumps(rec)))  # (plain JSON numbers)
    fresh = rng.multivariate_normal(np.zeros(20), cov, 500)
    assert np.mean([not dist.check(x)[0] for x in fresh]) <= 0.02
    shifted = fresh + 4.0 * np.sqrt(np.diag(cov))  # every feature 4 sd off
    assert all(not dist.check(x)[0] for x in shifted)
    assert dist.score(np.full(20, np.nan)) == float("inf")


@pytest.mark.parametrize("bad", [None, {"version": 1}, {"version": 1, "kind": "features", "mean": [0, 1], "sd": [1],
                                                         "threshold": 2}, {"version": 1, "kind": "features",
                                                         "mean": [0], "sd": [0], "threshold": 2},
                                 {"version": 1, "kind": "features", "mean": [0], "sd": [1], "threshold": float("nan")}])
def test_malformed_record_is_refused(bad):
    with pytest.raises(ArtifactError, match="distribution record is malformed"):
        D.Distribution(bad)


def _music(rng: np.random.Generator, style: str, seconds: float = 4.0) -> np.ndarray:
    return nonmusic.music(seconds, SR, float(rng.uniform(-30, -6)), rng, style)


def _foreign(rng: np.random.Generator, i: int) -> np.ndarray:
    """Clearly foreign to a model trained on synthetic music: non-music of every kind, and the
    same kind of music through a telephone line (300-3400 Hz band, hard clipping)."""
    kinds = nonmusic.KINDS
    if i % 2 == 0:
        return nonmusic.clip(kinds[(i // 2) % len(kinds)], 4.0, SR, float(rng.uniform(-30, -6)), rng)
    from scipy.signal import butter, sosfilt

    y = _music(rng, STYLES[i % len(STYLES)])
    y = sosfilt(butter(4, [300, 3400], btype="band", fs=SR, output="sos"), y)
    return np.clip(8 * y / (np.max(np.abs(y)) + 1e-9), -0.5, 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def synth_model(tmp_path_factory):
    """A logreg on gtzan57 features of synthetic music (4 styles x 8 clips of 4 s; 6 val clips
    each), saved as a classical artifact with its training distribution."""
    import pandas as pd

    from mgr.features.tables import extract_features
    from mgr.models import classical, classical_artifact
    from mgr.params import MlParams

    rng = np.random.default_rng(1)
    rows = []
    for g in STYLES:
        for i in range(14):
            rows.append({"track_id": f"{g}{i}", "split": "train" if i < 8 else "val", "genre": g,
                         **extract_features(_music(rng, g), SR, "gtzan57")})
    o = classical.train("logreg", pd.DataFrame(rows), MlParams(), feature_set="gtzan57")
    out = tmp_path_factory.mktemp("ood") / "logreg"
    classical_artifact.save(o.model, out, o.card)
    return out


@pytest.mark.slow
def test_synthetic_model_flags_foreign_audio_not_its_own(synth_model):
    """>= 90 % of clearly foreign inputs flagged; <= 10 % of fresh in-distribution tracks."""
    from mgr.features.tables import extract_features

    card = json.loads((synth_model / "model.json").read_text())
    dist = D.Distribution(card["distribution"])
    # inner CV (the default): every non-test track (32 train + 24 val) trains the model and its statistics
    assert card["distribution"]["n_train"] == 56 and card["distribution"]["n_val"] == 0
    cols = card["feature_columns"]
    rng = np.random.default_rng(2)

    def flagged(y):
        f = extract_features(y, SR, "gtzan57")
        return not dist.check(np.array([f[c] for c in cols]))[0]

    own = [flagged(_music(rng, STYLES[i % len(STYLES)])) for i in range(20)]
    foreign = [flagged(_foreign(rng, i)) for i in range(20)]
    print(f"OOD flagged: in-distribution {np.mean(own):.2f} of {len(own)}, foreign {np.mean(foreign):.2f} of {len(foreign)}")
    assert np.mean(own) <= 0.10, own
    assert np.mean(foreign) >= 0.90, foreign


def test_predict_reports_and_abstains(synth_model, tmp_path):
    from typer.testing import CliRunner

    from mgr.cli import app
    from mgr.inference.output import csv_rows, to_json_line
    from mgr.inference.predictors import load_predictor

    rng = np.random.default_rng(3)
    phone = tmp_path / "sweep.wav"  # (gate off below: this is about the distribution check)
    sf.write(phone, nonmusic.clip("sweep", 4.0, SR, -12, rng), SR)
    own = tmp_path / "own.wav"
    sf.write(own, _music(rng, "disco"), SR)
    r = load_predictor(synth_model, gate=False).predict_file(phone)
    assert r.in_distribution is False and r.ood_score > 0 and r.genre is not None  # flagged, still answered
    obj = json.loads(to_json_line(r))
    assert obj["in_distribution"] is False and obj["ood_score"] == r.ood_score
    assert csv_rows(r)[-1] == "0"
    r_own = load_predictor(synth_model, gate=False).predict_file(own)
    assert r_own.in_distribution is True and r_own.genre is not None
    # --min-confidence set (any level): a far input's genre is withheld, with the reason
    r = load_predictor(synth_model, min_confidence=0.0, gate=False).predict_file(phone)
    assert r.genre is None and r.reason.startswith("unknown: out of distribution") and r.top_k
    # the table marks it
    res = CliRunner().invoke(app, ["predict", str(phone), str(own), "--model", str(synth_model), "-q", "--no-music-gate"],
                             env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "(?)" in res.stdout and "far from what the model was trained on" in res.stdout


def test_deep_model_band_statistics(tmp_path):
    """A deep model's record: per-band log-mel statistics; predict accumulates the same numbers
    while streaming (equal to those of the whole spectrogram), and flags foreign input."""
    from mgr.inference.predictors import load_predictor
    from mgr.inference.streaming import file_spectrogram

    model = tmp_path / "cnn"
    shutil.copytree(FIX / "tiny_cnn", model)
    card = json.loads((model / "model.json").read_text())
    rng = np.random.default_rng(4)
    files, stats = [], []
    for i in range(16):
        p = tmp_path / f"m{i}.wav"
        sf.write(p, _music(rng, STYLES[i % len(STYLES)], 3.0), SR)
        files.append(p)
        stats.append(D.track_band_stats(file_spectrogram(p, card["frontend"])))
    card["distribution"] = D.fit(np.stack(stats[:12]), None, kind="logmel_band_stats")
    (model / "model.json").write_text(json.dumps(card))
    pred = load_predictor(model, gate=False)
    flags = [pred.predict_file(p).in_distribution for p in files[12:]]
    assert flags.count(True) >= 3, flags
    noise = tmp_path / "noise.wav"
    sf.write(noise, nonmusic.clip("white", 3.0, SR, -10, rng), SR)
    r = pred.predict_file(noise)
    assert r.in_distribution is False
    # the streamed sums give the whole spectrogram's statistics
    S = file_spectrogram(noise, card["frontend"])
    assert D.Distribution(card["distribution"]).score(D.track_band_stats(S)) == pytest.approx(r.ood_score, abs=1e-3)
