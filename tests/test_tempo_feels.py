"""Issue 23: the tempo sets' real-music feels (half-/double-time, heavy backbeat, 16th hats over a
slow pulse, dense, rubato), the beat-phase features that tell a beat from its half, and the
error-kind table."""

from __future__ import annotations

import numpy as np
import pytest

from mgr.synth.render import drum_notes, render, step_time
from mgr.synth.styles import FEELS, sample_tempo_plan
from mgr.tempo import features as F
from mgr.tempo import protocol

SR = 22050
E = F.N_ENV


def _plan(feel: str, seed: int, bpm: float | None = None, genre: str = "rock"):
    rng = np.random.default_rng(seed)
    p = sample_tempo_plan(genre, rng, feel=feel)
    if bpm is not None:
        p.tempo_bpm = float(bpm)
    return p, rng


def _drums_evidence(feel: str, seed: int, bpm: float) -> np.ndarray:
    p, rng = _plan(feel, seed, bpm)
    p.parts = []  # the drums alone: their periodicities, not the comping's
    return F.evidence(F.envelopes(render(p, SR, 8.0, rng).audio, SR), F.fps(SR))


def _bin(bpm: float) -> int:
    return int(round(float(F.bin_of(bpm))))


def test_every_feel_is_drawn_and_renders_with_the_plans_tempo_as_label() -> None:
    from mgr.tempo.dataset import render_item

    plans = [sample_tempo_plan("pop", np.random.default_rng(i)) for i in range(120)]
    drawn = {p.extra.get("feel") for p in plans}
    assert set(FEELS) <= drawn and None in drawn  # half the plans keep the plain vocabulary
    for f in FEELS:
        p, rng = _plan(f, 1)
        assert p.extra["feel"] == f
        y = render(p, SR, 3.0, rng).audio
        assert y.shape == (3 * SR,) and np.isfinite(y).all() and np.abs(y).max() > 0.01
    # the feels test set cycles through the feels; its label is the plan's tempo
    y, bpm = render_item(14, "feels", "jazz", 1, 2.0)
    assert y.shape == (2 * SR,) and 50 <= bpm <= 220
    with pytest.raises(ValueError, match="unknown feel"):
        _plan("polka", 0)


def test_click_plans_draw_no_feel() -> None:
    """The click sets (pulse=False) stay as they were: no feel, no extra draws."""
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    p = sample_tempo_plan("rock", a, pulse=False)
    q = sample_tempo_plan("rock", b, pulse=False, feel=None)
    assert "feel" not in p.extra and p.tempo_bpm == q.tempo_bpm and a.random() == b.random()


def test_half_time_feel_is_labelled_at_the_pulse_the_plan_keeps() -> None:
    """Half-time: kick on 1, snare on 3 (the drums at half the beat), hats on every 8th of the
    plan's beat; the label is that beat, and the hats' band envelope repeats at twice it."""
    p, rng = _plan("half_time", 2, 120.0)
    assert p.drums == "half_time" and p.beats_per_bar == 4
    bar = p.beats_per_bar * p.steps_per_beat
    notes = drum_notes(p, p.drums, 4 * bar, rng)
    kick = {nt.step % bar for nt in notes if nt.drum == "kick" and nt.vel >= 1.0}
    snare = {nt.step % bar for nt in notes if nt.drum == "snare" and nt.vel >= 1.0}
    hats = sorted({nt.step % p.steps_per_beat for nt in notes if nt.drum == "hat"})
    assert kick == {0} and snare == {2 * p.steps_per_beat}  # one kick and one snare per bar
    assert hats == ([0, 2] if p.steps_per_beat == 4 else [0, 1, 2])  # 8ths (triplets) of the beat
    X = _drums_evidence("half_time", 2, 120.0)
    hat_ft = X[:, E + 4]
    assert hat_ft[_bin(240.0) - 1: _bin(240.0) + 2].max() > 0.8  # the hats: 8ths of the 120 BPM beat


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sixteenth_hats_over_a_slow_pulse_have_the_expected_periodicities(seed: int) -> None:
    """A 65 BPM backbeat under 16th hats: the hats' band repeats at 4x the beat (260 BPM), while
    the linear accent of the whole mix has its phase contrast at the beat, not at its half."""
    p, _ = _plan("sixteenths", seed, 65.0)
    assert p.drums == "sixteenths" and p.meter == "4/4"
    X = _drums_evidence("sixteenths", seed, 65.0)
    assert abs(F.BPM_GRID[X[:, E + 4].argmax()] / 260.0 - 1) <= 0.02
    con = X[:, 3 * E + 5]
    assert con[_bin(65.0)] > con[_bin(32.5)] + 0.4


def test_sixteenths_draw_a_slow_pulse() -> None:
    from mgr.synth.styles import SLOW_PULSE_BPM

    tempi = [_plan("sixteenths", s, genre="metal")[0].tempo_bpm for s in range(30)]
    assert min(tempi) >= SLOW_PULSE_BPM[0] and max(tempi) <= SLOW_PULSE_BPM[1]


def test_phase_contrast_tells_a_heavy_backbeat_from_its_half() -> None:
    """Kick on 1 and 3, snare on 2 and 4, cymbals 10-20 dB down: folded at half the tempo the
    snare sits half a period after the kick (small contrast); at the tempo only the soft off-beat
    cymbals do (large contrast). Over five tempi, the accent envelope's contrast says so each time."""
    for seed, bpm in enumerate((90.0, 110.0, 125.0, 140.0, 160.0)):
        p, _ = _plan("backbeat_heavy", seed, bpm)
        assert p.drums == "backbeat_heavy"
        con = _drums_evidence("backbeat_heavy", seed, bpm)[:, 3 * E + 5]
        assert con[_bin(bpm)] > con[_bin(bpm / 2)] + 0.1, (bpm, con[_bin(bpm)], con[_bin(bpm / 2)])


def test_phase_evidence_on_constructed_pulses() -> None:
    """Impulses every 20 frames, every other one half as loud: at period 20 all onsets fall on one
    phase (largest on-beat salience, contrast = its full height); at period 40 the soft ones sit half
    a period later (contrast about half of it); at period 10 every other fold is empty."""
    n = 800
    x = np.zeros((1, n))
    x[0, 5::40] = 1.0
    x[0, 25::40] = 0.5
    on, con = F.phase_evidence(x, np.array([10.0, 20.0, 40.0]))
    assert on.shape == con.shape == (1, 3)
    assert np.argmax(on[0]) == 2 or on[0, 2] == pytest.approx(on[0].max())
    assert con[0, 1] > 0.5 * on[0, 1] and con[0, 2] < 0.7 * on[0, 2]
    assert np.isfinite(F.phase_evidence(np.zeros((2, 30)), F.BPM_GRID)[0]).all()  # short / silent: no error


def test_evidence_channels_and_bar_lags() -> None:
    """The evidence has acf, tempogram, on-beat, contrast, acf at 3 and 4 beats per envelope and
    the position; a 4/4 bar accent (a loud click every 4th beat) shows at the 4-beat lag."""
    from mgr.synth import dsp

    assert F.N_CHANNELS == 6 * E + 1
    y = np.zeros(12 * SR)
    beat = 0.5
    for i, t in enumerate(np.arange(0.1, 11.9, beat)):
        dsp.add_at(y, (1.0 if i % 4 == 0 else 0.3) * dsp.click(SR), int(t * SR))
    X = F.evidence(F.envelopes(y.astype(np.float32), SR), F.fps(SR))
    assert X.shape == (F.N_BINS, F.N_CHANNELS) and X.dtype == np.float32 and np.isfinite(X).all()
    bar3, bar4 = X[:, 4 * E + 5], X[:, 5 * E + 5]
    assert bar4[_bin(120.0)] > bar3[_bin(120.0)] + 0.2  # the accent recurs every 4 beats, not 3


def test_rubato_drifts_around_the_plans_tempo() -> None:
    """Rubato warps song time by a sinusoid whose slope averages 1: the local tempo moves by
    +-depth, the beats stay in order, and over whole periods the mean tempo is the label."""
    p, rng = _plan("rubato", 3, 100.0)
    rub = p.extra["rubato"]
    assert p.drums is None and 0.02 <= rub["depth"] <= 0.05
    steps = np.arange(0, 64 * p.steps_per_beat + 1, p.steps_per_beat, dtype=float)
    t = step_time(p, steps)
    ibi = np.diff(t)
    assert (ibi > 0).all() and ibi.max() / ibi.min() > 1 + rub["depth"]
    local = 60.0 / ibi
    assert np.abs(local / 100.0 - 1).max() <= rub["depth"] * 1.05
    period = rub["period_beats"] * p.beat_s
    whole = np.floor(t[-1] / period) * period  # over whole periods the warp adds nothing
    from mgr.synth.render import _rubato

    assert _rubato(np.array([whole]), p.beat_s, rub)[0] == pytest.approx(whole, abs=1e-9)
    p.extra.pop("rubato")
    assert np.allclose(np.diff(step_time(p, steps)), p.beat_s)  # without it the grid is exact


def test_dense_adds_parts() -> None:
    plain = sample_tempo_plan("pop", np.random.default_rng(9), feel="none")
    dense = sample_tempo_plan("pop", np.random.default_rng(9), feel="dense")
    assert len(dense.parts) >= len(plain.parts) + 2 and any(pt.role == "lead" for pt in dense.parts)


def test_error_kinds_on_constructed_examples() -> None:
    ref = np.array([100.0] * 9 + [np.nan])
    est = np.array([103.9, 196.0, 51.0, 300.0, 33.3, 150.0, np.nan, 133.3, 100.0, 80.0])
    kinds = protocol.error_kinds(est, ref)
    assert kinds.tolist() == ["correct", "x2", "x1/2", "x3", "x1/3", "other", "other", "other", "correct"]
    c = protocol.error_counts(est, ref)
    assert c == {"correct": 2, "x2": 1, "x1/2": 1, "x3": 1, "x1/3": 1, "other": 3}
    r = protocol.report(est, ref)
    assert r["errors"] == {"x2": 1, "x1/2": 1, "x3": 1, "x1/3": 1, "other": 3}
    assert r["octave"]["x1/2"] == pytest.approx(1 / 9)
    table = protocol.table_markdown({"s": {"learned": r}})
    assert "| x2 | x1/2 | x3 | x1/3 | other |" in table and "| 1 (0.111) | 1 (0.111) |" in table and "3 (0.333) |" in table


def test_feels_set_draws_real_musics_tempi() -> None:
    """The feels test set's tempi follow GTZAN's annotated distribution (log-normal, median ~91 BPM,
    0.37 octave), not the log-uniform 50-220 BPM of the other sets."""
    from mgr.tempo.dataset import REAL_TEMPO, real_tempo

    rng = np.random.default_rng(0)
    t = np.array([real_tempo(rng) for _ in range(4000)])
    assert t.min() >= 50 and t.max() <= 220
    assert abs(np.median(t) / REAL_TEMPO[0] - 1) < 0.03 and abs(np.log2(t).std() / REAL_TEMPO[1] - 1) < 0.08
    assert abs(t.mean() - 94.3) < 2.5 and abs(t.std() - 24.5) < 2.5  # GTZAN's mean and sd (tempo_eval_report)
    slow = np.array([real_tempo(rng, 50.0, 95.0) for _ in range(200)])
    assert slow.min() >= 50 and slow.max() <= 95
