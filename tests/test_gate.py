"""The no-music gate (mgr.inference.gate): generated non-music is refused, synthetic music is not,
and predict answers null genre / tempo / tags with a reason, per file and per --timeline segment."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from mgr.inference import gate, nonmusic
from mgr.synth.styles import GENRES

SR = 22050


def _evidence(y: np.ndarray, sr: int = SR) -> gate.Evidence | None:
    an = gate.GateAnalyzer(sr)
    for s in range(0, len(y), 7 * sr):  # pushed in odd-sized blocks, as predict streams them
        an.push(y[s : s + 7 * sr])
    return gate.verdict(an)[1] if an.n_frames else None


def _refused(y: np.ndarray, sr: int = SR) -> bool:
    an = gate.GateAnalyzer(sr)
    an.push(y)
    return gate.verdict(an)[0] is not None


@pytest.mark.slow
def test_generated_non_music_is_refused():
    """>= 95 % of non-music clips of every kind, 3-60 s, -40..0 dBFS (fresh draws, not the
    calibration's seeds) get no answer; every kind is refused at least 6 times in 8."""
    rng = np.random.default_rng(2024)
    refused, per_kind = 0, {}
    for kind in nonmusic.KINDS:
        k = 0
        for _ in range(8):
            seconds = float(np.exp(rng.uniform(np.log(3.0), np.log(60.0))))
            y = nonmusic.clip(kind, seconds, SR, float(rng.uniform(-40.0, 0.0)), rng)
            k += _refused(y)
        per_kind[kind] = k
        refused += k
    n = 8 * len(nonmusic.KINDS)
    print(f"non-music refused: {refused}/{n} = {refused / n:.3f}; per kind (of 8): {per_kind}")
    assert refused / n >= 0.95, per_kind
    assert min(per_kind.values()) >= 6, per_kind


@pytest.mark.slow
def test_synthetic_music_is_not_refused():
    """<= 2 % of synthetic music (the built-in set's 8 s clips, every style, -40..0 dBFS) refused:
    with 50 clips, at most one."""
    rng = np.random.default_rng(77)
    refused = [g for i in range(50) for g in [GENRES[i % len(GENRES)]]
               if _refused(nonmusic.music(8.0, SR, float(rng.uniform(-40.0, 0.0)), rng, g))]
    print(f"synthetic music refused: {len(refused)}/50 {refused}")
    assert len(refused) <= 1, refused


def test_gate_evidence_is_interpretable():
    """Each kind fails for its own reason: noise is not tonal, a tone is steady, speech has pauses;
    music has a beat and note changes."""
    rng = np.random.default_rng(3)
    white = _evidence(nonmusic.clip("white", 10, SR, -20, rng))
    assert white.tonality < gate.BEAT_TONALITY and white.pulse < gate.STRONG_PULSE and white.change < gate.MIN_CHANGE
    tone = _evidence(nonmusic.clip("tone", 10, SR, -20, rng))
    assert tone.change < gate.MIN_CHANGE
    assert "steady" in gate.decide(tone) and "steady" in gate.decide(white)
    speech = _evidence(nonmusic.clip("speech", 12, SR, -20, rng))
    assert speech.low_energy > gate.MAX_LOW_ENERGY and gate.decide(speech) is not None
    music = _evidence(nonmusic.music(10, SR, -20, rng, "rock"))
    assert gate.decide(music) is None and music.pulse >= gate.STRONG_PULSE and music.change >= gate.MIN_CHANGE


def test_gate_is_level_and_sample_rate_invariant():
    rng = np.random.default_rng(4)
    y = nonmusic.music(10, SR, -10, rng, "disco")
    loud, quiet = _evidence(y), _evidence((y * 10 ** (-30 / 20)).astype(np.float32))
    assert abs(loud.tonality - quiet.tonality) < 0.02 and abs(loud.pulse - quiet.pulse) < 0.05
    from mgr.audio.decode import resample

    for sr in (16000, 12000, 44100):  # musicnn's, choi's front end; CD audio
        assert gate.decide(_evidence(np.asarray(resample(y, SR, sr), np.float32), sr)) is None


def test_long_files_are_judged_in_chunks():
    """A 100 s file: 30 s chunks, music when at least half are; a segment is judged on >= 8 s."""
    rng = np.random.default_rng(5)
    an = gate.GateAnalyzer(SR)
    an.push(nonmusic.clip("pink", 70, SR, -20, rng))
    an.push(nonmusic.music(30, SR, -20, rng, "pop"))
    reason, _ = gate.verdict(an)
    assert reason is not None and "of 3 30 s stretches" in reason
    # the music stretch alone, and a 3 s segment inside it (judged on 8 s around it)
    assert gate.verdict(an, an.frame_of(70), an.frame_of(100))[0] is None
    assert gate.verdict(an, an.frame_of(85), an.frame_of(88))[0] is None
    assert gate.verdict(an, an.frame_of(10), an.frame_of(13))[0] is not None


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from _classical_helpers import tiny_gtzan57_logreg

    return tiny_gtzan57_logreg(tmp_path_factory.mktemp("m") / "tiny")


def test_predict_refuses_noise_per_file_and_per_segment(tiny_model, tmp_path):
    from mgr.inference.output import to_json_line
    from mgr.inference.predictors import load_predictor

    rng = np.random.default_rng(6)
    noise = tmp_path / "noise.wav"
    sf.write(noise, nonmusic.clip("white", 10, SR, -20, rng), SR)
    mixed = tmp_path / "mixed.wav"  # 12 s of hum, then 24 s of music
    sf.write(mixed, np.concatenate([nonmusic.clip("hum", 12, SR, -20, rng), nonmusic.music(24, SR, -20, rng, "rock")]), SR)

    pred = load_predictor(tiny_model, timeline=True, window_s=6.0, overlap=0.0, tempo="dsp", tempo_dir=tmp_path / "none")
    from mgr.inference.predict import predict_many

    r_noise, r_mixed = predict_many(pred, [noise, mixed])
    assert r_noise.genre is None and r_noise.tempo_bpm is None and r_noise.top_k == [] and r_noise.music is False
    assert r_noise.reason.startswith("no music detected: ")
    obj = json.loads(to_json_line(r_noise))
    assert obj["genre"] is None and obj["tempo_bpm"] is None and obj["music"] is False
    assert all(s["genre"] is None and s["tempo_bpm"] is None and s["music"] is False for s in obj["segments"])
    # the mixed file: music (most of it), its hum segments refused, its music segments answered
    assert r_mixed.music is True and r_mixed.genre is not None and r_mixed.tempo_bpm is not None
    segs = r_mixed.segments
    assert len(segs) >= 6 and [s.music for s in segs] == [False, False] + [True] * (len(segs) - 2)
    assert segs[0].genre is None and segs[0].tempo_bpm is None and segs[0].reason.startswith("no music detected")
    assert all(s.genre is not None and s.tempo_bpm is not None for s in segs[2:])

    off = load_predictor(tiny_model, gate=False)  # --no-music-gate: the model answers anyway
    r = off.predict_file(noise)
    assert r.genre is not None and r.music is None


def test_cli_no_music(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from mgr.cli import app

    rng = np.random.default_rng(7)
    f = tmp_path / "applause.wav"
    sf.write(f, nonmusic.clip("applause", 5, SR, -15, rng), SR)
    res = CliRunner().invoke(app, ["predict", str(f), "--model", str(tiny_model), "-f", "csv", "-q"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    head, row = lines[0].split(","), next(iter(__import__("csv").reader([lines[1]])))
    cells = dict(zip(head, row))
    assert cells["genre"] == "" and cells["tempo_bpm"] == "" and cells["music"] == "0"
    assert cells["reason"].startswith("no music detected")
    res = CliRunner().invoke(app, ["predict", str(f), "--model", str(tiny_model), "-q"])
    assert "no music" in res.stdout
