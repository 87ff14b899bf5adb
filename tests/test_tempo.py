"""mgr.tempo (issue 14): the protocol numbers, the generator's exact tempo, the features, the
train-tempo stage on a tiny config, and `mgr predict --tempo`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from _eval_helpers import eval_paths

from mgr.dsp import kernels as fastdsp
from mgr.tempo import features as F
from mgr.tempo import protocol

SR = 22050
FIX = Path(__file__).resolve().parent / "data" / "predict"


# ---------------------------------------------------------------------------- protocol
def test_octave_breakdown_files_each_estimate_in_one_class() -> None:
    ref = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 120.0])
    est = np.array([103.0, 200.0, 50.0, 300.0, 33.3, 150.0, np.nan, 120.0])
    b = protocol.octave_breakdown(est, ref)
    assert b == pytest.approx({"correct": 2 / 8, "x2": 1 / 8, "x1/2": 1 / 8, "x3": 1 / 8, "x1/3": 1 / 8, "other": 2 / 8})
    r = protocol.report(est, ref, ["a", "a", "a", "a", "b", "b", "b", "b"])
    assert r["n"] == 8 and r["acc1"] == pytest.approx(2 / 8) and r["acc2"] == pytest.approx(6 / 8)
    assert r["per_genre_acc1"] == pytest.approx({"a": 0.25, "b": 0.25})
    # MAE over the tracks with an estimate; the missing one counts as wrong, never skipped
    assert r["mae_bpm"] == pytest.approx(np.mean([3, 100, 50, 200, 66.7, 50, 0]))
    # exactly 4 % is inside; references without a tempo are left out
    assert protocol.report([104.0, 1.0], [100.0, np.nan])["acc1"] == 1.0


def test_protocol_metrics_are_the_evaluation_ones() -> None:
    from mgr.evaluation import metrics as ev

    rng = np.random.default_rng(0)
    ref = rng.uniform(50, 200, 300)
    est = ref * rng.choice([0.5, 1.0, 1.02, 2.0, 3.0, 1 / 3, 1.3], 300)
    est[::17] = np.nan
    assert protocol.tempo_acc1 is ev.tempo_acc1 and protocol.tempo_acc2 is ev.tempo_acc2  # one definition
    r = protocol.report(est, ref)
    assert r["acc1"] == ev.tempo_acc1(est, ref) and r["acc2"] == ev.tempo_acc2(est, ref)
    assert r["mae_bpm"] == pytest.approx(ev.tempo_mae(est, ref))


def test_beats_needs_higher_acc1_and_no_lower_acc2() -> None:
    assert protocol.beats({"n": 5, "acc1": 0.8, "acc2": 0.9}, {"n": 5, "acc1": 0.7, "acc2": 0.9})
    assert not protocol.beats({"n": 5, "acc1": 0.8, "acc2": 0.85}, {"n": 5, "acc1": 0.7, "acc2": 0.9})
    assert not protocol.beats({"n": 5, "acc1": 0.7, "acc2": 1.0}, {"n": 5, "acc1": 0.7, "acc2": 0.9})


# ------------------------------------------------------------------------ generator
def _click_plan(bpm: float, meter: str = "4/4"):
    from mgr.synth.styles import TEMPO_METERS, sample_tempo_plan

    plan = sample_tempo_plan("pop", np.random.default_rng(1))
    plan.tempo_bpm, plan.meter = bpm, meter
    plan.beats_per_bar, plan.steps_per_beat = TEMPO_METERS[meter]
    plan.phase_s = 0.13
    return plan


@pytest.mark.parametrize("bpm", [92.0, 121.5, 147.0])
def test_click_track_at_x_bpm_gives_dsp_tempo_x(bpm: float) -> None:
    from mgr.synth.render import render_click

    y = render_click(_click_plan(bpm), SR, 12.0)
    assert abs(fastdsp.tempo(y, SR) / bpm - 1) <= 0.04
    # and the features peak there: the Fourier tempogram of the full-band envelope
    X = F.evidence(F.envelopes(y, SR), F.fps(SR))
    assert abs(F.BPM_GRID[np.argmax(X[:, F.N_ENV])] / bpm - 1) <= 0.03


def test_stretching_the_envelopes_scales_the_tempo() -> None:
    from mgr.synth.render import render_click

    env = F.envelopes(render_click(_click_plan(100.0), SR, 12.0), SR)
    for s in (0.8, 1.25):
        X = F.evidence(F.stretch(env, s), F.fps(SR))
        assert abs(F.BPM_GRID[np.argmax(X[:, F.N_ENV])] / (100.0 * s) - 1) <= 0.03


def test_band_envelopes_keep_the_loudness_that_db_flux_flattens() -> None:
    """8th-note clicks, every other one at -9 dB: librosa's dB flux (row 0) sees two near-equal
    pulses per beat; the loudness flux of the band groups (rows 1-4) and the linear accent flux
    (row 5) see the loud beat, and their autocorrelation prefers the beat to the 8th level."""
    from mgr.synth import dsp

    y = np.zeros(10 * SR)
    step = 0.25  # 8ths at 120 BPM
    for i, t in enumerate(np.arange(0.1, 9.9, step)):
        dsp.add_at(y, (1.0 if i % 2 == 0 else 0.35) * dsp.click(SR), int(t * SR))
    y += 1e-4 * np.random.default_rng(0).standard_normal(y.size)
    env = F.envelopes(y.astype(np.float32), SR)
    assert env.shape[0] == F.N_ENV == 6
    fr = F.fps(SR)
    frames = np.round(np.arange(0.1, 9.9, step) * fr).astype(int)

    def ratio(row: np.ndarray) -> float:  # soft / loud onset peak
        pk = np.array([row[max(0, f - 1): f + 3].max() for f in frames])
        return float(pk[1::2].mean() / pk[0::2].mean())

    assert ratio(env[0]) > 0.7  # the dB flux: the soft click counts almost as much
    reached = [r for r in range(1, 5) if env[r].max() > 0.1 * env[1:5].max()]  # the groups the click reaches
    assert reached and all(ratio(env[r]) < 0.65 for r in reached) and ratio(env[5]) < 0.5
    X = F.evidence(env, fr)
    q, e = int(round(F.bin_of(120.0))), int(round(F.bin_of(240.0)))
    for r in reached + [5]:  # autocorrelation: the beat above the 8th level (row 0: the other way round)
        assert X[q, r] - X[e, r] > 0.1 and X[q, r] - X[e, r] > X[q, 0] - X[e, 0] + 0.15


def test_tempo_plans_widen_the_vocabulary_and_keep_the_grid_exact() -> None:
    from mgr.synth.render import beat_times, render
    from mgr.synth.styles import GENRES, sample_tempo_plan

    plans = [sample_tempo_plan(GENRES[i % 10], np.random.default_rng(i)) for i in range(200)]
    tempi = np.array([p.tempo_bpm for p in plans])
    assert tempi.min() >= 50 and tempi.max() <= 220 and (tempi < 70).any() and (tempi > 180).any()
    assert {p.meter for p in plans} >= {"4/4", "3/4", "12/8", "6/8", "2/4"}
    assert any(p.drums is None and p.genre != "classical" for p in plans)  # drum-less tracks
    assert any(p.drums == "random" for p in plans)  # random, often syncopated grooves
    g = next(p for p in plans if p.drums == "random")
    r = render(g, SR, 3.0, np.random.default_rng(0))
    bar = g.beats_per_bar * g.steps_per_beat
    assert "drums" in r.tags and all(0 <= st < bar for st, _, _ in g.extra["groove"])
    # accented pulse comping (the chord on every 8th, the beat louder), sometimes with no drums or bass
    pulse = [p for p in plans if any(pt.pattern == "pulse" for pt in p.parts)]
    assert len(pulse) >= 10 and any(p.drums is None and all(pt.role != "bass" for pt in p.parts) for p in pulse)
    from mgr.synth.render import comp_notes

    g = next(p for p in pulse if p.steps_per_beat == 4)
    notes = comp_notes(g, "pulse", "piano", 4 * g.beats_per_bar * 4, np.random.default_rng(0))
    beat = np.array([nt.vel for nt in notes if nt.step % 4 == 0])
    off = np.array([nt.vel for nt in notes if nt.step % 4 == 2])
    assert len(beat) == len(off) > 0 and beat.min() > off.max()  # every 8th, only softer off the beat
    p = next(p for p in plans if p.meter == "6/8")
    r = render(p, SR, 3.0, np.random.default_rng(0))
    assert r.audio.shape == (3 * SR,) and np.isfinite(r.audio).all()
    bt = beat_times(p, 3.0)
    assert np.allclose(np.diff(bt), 60.0 / p.tempo_bpm)


def test_generate_writes_a_folder_tempo_set(tmp_path: Path) -> None:
    from mgr.tempo.dataset import generate

    csv = generate(tmp_path, 3, kind="heldout", styles=["jazz"], seed=3, duration_s=2.0, fmt="wav", workers=1)
    t = pd.read_csv(csv)
    assert list(t.columns) == ["track_id", "path", "genre", "tempo_bpm"] and len(t) == 3
    assert (t["genre"] == "jazz").all() and t["tempo_bpm"].between(50, 220).all()
    y, sr = sf.read(tmp_path / t["path"][0])
    assert sr == SR and len(y) == 2 * SR


def test_readout_inverts_the_soft_targets() -> None:
    bpm = np.array([55.0, 99.9, 143.2, 210.0])
    est, conf = F.readout(F.soft_targets(bpm))
    assert np.allclose(est, bpm, rtol=0.005) and (conf > 0.95).all()


def test_the_prior_decides_between_a_tempo_and_its_double() -> None:
    """Label-shift correction: equal evidence for 110 and 220 BPM is read as 110 under a prior with
    median 95 BPM, as 220 under one with median 200; a log-uniform training prior is undone."""
    rng = np.random.default_rng(0)
    train = np.exp(rng.uniform(np.log(50), np.log(220), 4000))  # log-uniform labels, as the tempo sets
    p = F.soft_targets(np.array([110.0])) + F.soft_targets(np.array([220.0]))
    p /= p.sum()
    for median, want in ((95.0, 110.0), (200.0, 220.0)):
        w = F.prior_weights(train, median, 0.5)
        est, _ = F.readout(F.apply_prior(p, w))
        assert abs(est[0] / want - 1) <= 0.02, (median, est)
        assert np.isfinite(w).all() and w.max() == pytest.approx(1.0) and (w > 0).all()
    # the floor: grid ends the training labels never reached are not amplified above the centre
    w = F.prior_weights(train, 95.0, 0.5)
    assert w[F.BPM_GRID > 280].max() < w[np.abs(F.BPM_GRID - 95) < 3].min()
    assert np.array_equal(F.apply_prior(p, None), p.astype(np.float64))
    # posteriors stay distributions
    q = F.apply_prior(rng.dirichlet(np.ones(F.N_BINS), 5), w)
    assert np.allclose(q.sum(axis=1), 1.0) and (q >= 0).all()
    with pytest.raises(ValueError):
        F.prior_weights(train, float("nan"), 0.5)


def test_the_ensemble_averages_its_members() -> None:
    pytest.importorskip("keras")
    from mgr.tempo.model import average, build

    members = [build(width=4, seed=s, name=f"m{s}") for s in (1, 2)]
    x = np.random.default_rng(0).random((3, F.N_BINS, F.N_CHANNELS)).astype(np.float32)
    want = np.mean([np.asarray(m(x, training=False)) for m in members], axis=0)
    ens = average(members)
    assert ens.output_names == ["tempo"] and average(members[:1]) is members[0]
    np.testing.assert_allclose(np.asarray(ens(x, training=False)), want, rtol=1e-5, atol=1e-7)


def test_a_card_prior_is_checked() -> None:
    from mgr.errors import ArtifactError
    from mgr.tempo.estimate import prior_of

    assert prior_of({}) is None and prior_of({"prior": None}) is None
    ok = {"prior": {"weights": [1.0] * F.N_BINS}}
    assert prior_of(ok).shape == (F.N_BINS,)
    for bad in ([1.0] * (F.N_BINS - 1), [float("nan")] * F.N_BINS, [-1.0] + [1.0] * (F.N_BINS - 1),
                [0.0] * F.N_BINS, "x", None):
        with pytest.raises(ArtifactError, match="prior.weights"):
            prior_of({"prior": {"weights": bad}})


# -------------------------------------------------------------- stage + predict
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The train-tempo stage on a tiny config (no dataset in the root: synthetic sets only)."""
    from mgr.params import Params
    from mgr.tempo.train import run

    root = tmp_path_factory.mktemp("tempo_root")
    p = Params()
    p = dataclasses.replace(p, tempo=dataclasses.replace(
        p.tempo, train_clips=8, val_clips=4, heldout_clips=3, click_clips=2, feels_clips=2, calib_clips=4, duration_s=3.0, epochs=2, stretches=1,
        workers=1, ensemble=2))
    metrics, facts = run(p, tracks_dir=root / "data" / "raw" / p.data.source, split_csv=root / "data" / "split.csv",
                         out_dir=root / "models" / "tempo", log=lambda s: None)
    (root / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_stage_writes_the_artifact_card_and_protocol(trained: Path) -> None:
    from mgr.io import file_hash

    d = trained / "models" / "tempo"
    card = json.loads((d / "model.json").read_text())
    assert card["kind"] == "tempo" and card["sha256"] == file_hash(d / "model.onnx")
    assert card["trained_on"]["tempo_set"]["heldout_styles"] == ["country", "jazz", "reggae"]
    assert card["trained_on"]["tempo_set"]["ensemble"] == 2 and "mean of 2" in card["method"]
    assert isinstance(card["beats_dsp_on_validation"], bool) and card["validation"]["learned"]["n"] == 4
    m = json.loads((trained / "metrics.json").read_text())
    assert set(m["sets"]) == {"validation", "heldout_styles", "clicks", "clicks_subdivided", "heldout_feels"}
    # the confidence map is fitted on the calibration clips (never trained on), measured on every set
    cal = card["confidence_calibration"]
    assert cal["n"] == m["n"]["calibration"] == 4 and "(calibration set)" in cal["method"]
    assert set(m["confidence_reliability"]) == {"calibration", *m["sets"]}
    for s in m["sets"].values():
        assert set(s) == {"dsp", "learned", "learned (training prior)"}
        assert {"acc1", "acc2", "mae_bpm", "octave", "errors"} <= set(s["learned"])
        e = s["learned"]["errors"]  # counts by kind, next to the fractions
        assert list(e) == ["x2", "x1/2", "x3", "x1/3", "other"] and sum(e.values()) <= s["learned"]["n"]
        assert all(e[k] == round(s["learned"]["octave"][k] * s["learned"]["n"]) for k in e)
    prior = card["prior"]
    assert (prior["median_bpm"], prior["octaves"]) == (91.3, 0.37) and len(prior["weights"]) == F.N_BINS
    assert max(prior["weights"]) == pytest.approx(1.0) and min(prior["weights"]) > 0
    assert set(m["sets"]["heldout_styles"]["dsp"]["per_genre_acc1"]) <= {"country", "jazz", "reggae"}
    assert m["n"]["heldout_styles"] == 3 and m["n"]["clicks"] == m["n"]["clicks_subdivided"] == m["n"]["heldout_feels"] == 2


def test_estimator_modes_and_tamper_check(trained: Path, tmp_path: Path) -> None:
    from mgr.errors import ArtifactError
    from mgr.inference.output import Prediction, Segment
    from mgr.synth.render import render_click
    from mgr.tempo.estimate import TempoChoice

    wav = tmp_path / "click.wav"
    sf.write(wav, render_click(_click_plan(120.0), SR, 12.0), SR)
    d = trained / "models" / "tempo"

    def pred():
        return Prediction(str(wav), "pop", [("pop", 1.0)], 77.0, "model",
                          segments=[Segment(0.0, 3.0, "pop", [], 77.0), Segment(6.0, 12.0, "pop", [], 77.0)])

    r = TempoChoice("dsp", d).apply(pred(), wav)
    assert r.tempo_estimator == "dsp" and abs(r.tempo_bpm / 120 - 1) <= 0.04 and 0 <= r.tempo_confidence <= 1
    assert all(abs(sg.tempo_bpm / 120 - 1) <= 0.04 for sg in r.segments)  # local tempo per segment
    r = TempoChoice("learned", d).apply(pred(), wav)
    assert r.tempo_estimator == "learned" and 0 <= r.tempo_confidence <= 1
    # (a calibrated confidence under 0.5, mgr.tempo.calibration, reports no tempo)
    assert (30 <= r.tempo_bpm <= 300) if r.tempo_confidence >= 0.5 else r.tempo_bpm is None
    auto = TempoChoice("auto", d)
    assert auto.mode == ("learned" if auto.learned.beats_dsp else "model")
    assert TempoChoice("auto", tmp_path / "none").mode == "model"  # no artifact: the model's own tempo
    assert TempoChoice("auto", tmp_path / "none").apply(pred(), wav).tempo_bpm == 77.0
    with pytest.raises(ArtifactError, match="no tempo estimator"):
        TempoChoice("learned", tmp_path / "none")
    bad = tmp_path / "tampered"
    shutil.copytree(d, bad)
    with open(bad / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        TempoChoice("learned", bad)


def test_timeline_tempo_past_the_analysed_start_and_short_stretches(trained: Path, tmp_path: Path, monkeypatch) -> None:
    """A long file is analysed for its first MAX_ANALYSIS_S seconds; timeline segments past that (or
    straddling it) decode their own stretch and get a local tempo; a stretch shorter than the 1 s
    detrending window no longer fails (it used to raise a broadcast ValueError)."""
    from mgr.inference.output import Prediction, Segment
    from mgr.synth.render import render_click
    from mgr.tempo import estimate

    wav = tmp_path / "long_click.wav"
    sf.write(wav, np.concatenate([render_click(_click_plan(100.0), SR, 12.0), render_click(_click_plan(150.0), SR, 12.0)]), SR)
    monkeypatch.setattr(estimate, "MAX_ANALYSIS_S", 10.0)
    segs = [Segment(0.0, 10.0, "pop", [], None), Segment(9.0, 12.0, "pop", [], None), Segment(14.0, 24.0, "pop", [], None)]
    r = estimate.TempoChoice("dsp", trained / "models" / "tempo").apply(
        Prediction(str(wav), "pop", [("pop", 1.0)], None, "model", segments=segs), wav)
    got = [sg.tempo_bpm for sg in r.segments]
    assert abs(got[0] / 100 - 1) <= 0.04 and abs(got[2] / 150 - 1) <= 0.04, got
    assert got[1] is not None  # straddles the analysed 10 s: its own stretch
    env = F.envelopes(render_click(_click_plan(120.0), SR, 0.8), SR)  # ~34 frames < 43 (1 s)
    assert F.evidence(env, F.fps(SR)).shape == (F.N_BINS, F.N_CHANNELS)


def test_predict_cli_tempo_option(trained: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mgr.cli import app
    from mgr.synth.render import render_click

    root = tmp_path / "proj"
    (root / "models").mkdir(parents=True)
    shutil.copytree(FIX / "tiny_cnn", root / "models" / "cnn2d")
    shutil.copytree(trained / "models" / "tempo", root / "models" / "tempo")
    wav = tmp_path / "click.wav"
    sf.write(wav, render_click(_click_plan(121.0), SR, 12.0), SR)

    def run(*a):
        return CliRunner().invoke(app, ["predict", str(wav), "--root", str(root), "--model", "cnn2d", "-f", "json",
                                        "--no-music-gate", *a])  # (a bare click track: no music for the gate)

    from mgr.inference.catalog import list_models

    assert [m["name"] for m in list_models(root)] == ["cnn2d"]  # models/tempo is no genre model
    r = run("--tempo", "dsp", "--timeline")
    assert r.exit_code == 0, r.output
    x = json.loads(r.stdout)
    assert x["tempo_estimator"] == "dsp" and abs(x["tempo_bpm"] / 121 - 1) <= 0.04
    assert 0 <= x["tempo_confidence"] <= 1 and all(s["tempo_bpm"] for s in x["segments"])
    r = run("--tempo", "learned")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tempo_estimator"] == "learned"
    assert run("--tempo", "fast").exit_code == 2
    shutil.rmtree(root / "models" / "tempo")
    assert run("--tempo", "learned").exit_code == 3  # asked for the learned estimator: there is none
    x = json.loads(run().stdout)  # auto without the artifact: unchanged output
    assert "tempo_estimator" not in x and x["tempo_bpm"] is not None


def test_side_by_side_reports_every_estimator_on_the_test_tracks(tmp_path: Path) -> None:
    from mgr.params import Params

    tracks = pd.DataFrame({"track_id": ["a", "b", "c", "d"], "genre": ["jazz", "jazz", "rock", "rock"],
                           "tempo_bpm": [100.0, 120.0, 90.0, np.nan], "path": ["x"] * 4})
    baseline = {None: {"estimates": {"a": 200.0, "b": 121.0, "c": 45.0}}}
    heads = {"tempo_genre": {"a": 100.0, "b": 60.0, "c": 90.0}}
    (tmp_path / "metrics").mkdir()
    res = protocol.side_by_side(eval_paths(tmp_path), Params(), tracks, {None: ["a", "b", "c", "d"]}, baseline, heads, log=lambda s: None)
    saved = json.loads((tmp_path / "metrics" / "tempo_estimators.json").read_text())
    assert saved["n"] == res["n"] == 3
    dsp, head = saved["estimators"]["dsp"], saved["estimators"]["tempo_genre (tempo head)"]
    assert dsp["acc1"] == pytest.approx(1 / 3) and dsp["acc2"] == 1.0
    assert dsp["octave"]["x2"] == pytest.approx(1 / 3) and dsp["octave"]["x1/2"] == pytest.approx(1 / 3)
    assert head["acc1"] == pytest.approx(2 / 3) and head["per_genre_acc1"] == {"jazz": 0.5, "rock": 1.0}


def test_params_refuse_holding_out_every_style() -> None:
    from mgr.errors import ParamsError
    from mgr.params import GENRES_GTZAN, params_from_dict

    with pytest.raises(ParamsError, match="tempo.heldout_styles"):
        params_from_dict({"tempo": {"heldout_styles": list(GENRES_GTZAN)}})
    with pytest.raises(ParamsError, match="tempo.heldout_styles"):
        params_from_dict({"tempo": {"heldout_styles": ["polka"]}})


def test_the_tempo_estimator_is_not_a_genre_model(trained: Path) -> None:
    """Its card is an mgr card of kind ``tempo`` (one reader, file names checked); predict refuses it
    as a genre model in one line."""
    from mgr.cards import read_card
    from mgr.errors import ArtifactError
    from mgr.inference.predictors import load_predictor

    d = trained / "models" / "tempo"
    assert read_card(d, kind="tempo")["kind"] == "tempo"
    with pytest.raises(ArtifactError, match="tempo estimator, not a genre model"):
        load_predictor(d)
    card = json.loads((d / "model.json").read_text())
    (d / "model.json").write_text(json.dumps({**card, "onnx_file": "../model.onnx"}))
    with pytest.raises(ArtifactError, match="must be a file name inside"):
        read_card(d)
    (d / "model.json").write_text(json.dumps(card))
