"""Turn a :class:`~mgr.synth.styles.Plan` into audio, recording what was actually rendered.

The time grid is exact: beat ``k`` of the song starts at ``k * 60 / tempo_bpm`` seconds and the
clip starts ``plan.phase_s`` into the song, so the tempo label is the grid's tempo. Swing moves
off-beat steps later within the beat; humanisation jitters the timing and velocity of every note
but never the grid (and never the metronome of :func:`render_click`).

Tags are the instruments whose part put at least one sample into the clip, plus ``swing`` when
a swung off-beat note sounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mgr.synth import dsp
from mgr.synth.styles import SCALES, Chord, Plan


@dataclass
class Note:
    step: float  # position on the grid (steps from the song start)
    dur_steps: float
    pitches: tuple[float, ...]  # MIDI numbers, or () for drums
    vel: float
    drum: str = ""
    strum_s: float = 0.0


@dataclass
class Rendered:
    audio: np.ndarray  # float32, mono, in [-1, 1]
    tags: list[str]
    stems: dict[str, np.ndarray] = field(default_factory=dict)  # part name -> audio (pre-mix)


# ------------------------------------------------------------------------------ time grid
def step_time(plan: Plan, step: float | np.ndarray) -> float | np.ndarray:
    """Seconds from the song start of grid ``step`` (with swing; without humanisation)."""
    spb = plan.steps_per_beat
    step = np.asarray(step, dtype=np.float64)
    beat = np.floor(step / spb)
    j = step - beat * spb
    if spb == 4:
        r = plan.swing_ratio
        frac = np.interp(j, [0, 1, 2, 3, 4], [0.0, r / 2, r, (1 + r) / 2, 1.0])
    else:
        frac = j / spb
    out = (beat + frac) * plan.beat_s
    rub = plan.extra.get("rubato") if plan.extra else None
    if rub:  # rubato (tempo sets only): a smooth drift of the local tempo around the plan's
        out = _rubato(out, plan.beat_s, rub)
    return float(out) if out.ndim == 0 else out


def _rubato(t: np.ndarray, beat_s: float, rub: dict) -> np.ndarray:
    """Song time ``t`` warped so the local tempo drifts by +-``depth`` (a sinusoid of
    ``period_beats``): ``t + A sin(2 pi t / P + phase)`` with ``A = depth P / (2 pi)``, whose slope
    ``1 + depth cos(.)`` averages 1, so the mean tempo is the plan's."""
    period = float(rub["period_beats"]) * beat_s
    amp = float(rub["depth"]) * period / (2 * np.pi)
    return t + amp * (np.sin(2 * np.pi * t / period + float(rub["phase"])) - np.sin(float(rub["phase"])))


def beat_times(plan: Plan, duration_s: float) -> np.ndarray:
    """Clip-relative times of every beat inside the clip (the ground-truth beat grid)."""
    k0 = int(np.ceil(plan.phase_s / plan.beat_s))
    k1 = int(np.floor((plan.phase_s + duration_s) / plan.beat_s))
    t = np.arange(k0, k1 + 1) * plan.beat_s - plan.phase_s
    return t[(t >= 0) & (t < duration_s)]


# ------------------------------------------------------------------------------ patterns
def _eighth_steps(spb: int) -> tuple[int, ...]:
    return (0, 2) if spb == 4 else (0, 2)  # compound meters: the shuffle's 1st and 3rd triplet


def _is_offbeat(plan: Plan, step: float) -> bool:
    return plan.steps_per_beat == 4 and (step % 4) != 0


def _voicing(plan: Plan, chord: Chord, lo: int) -> list[int]:
    root_pc = (plan.tonic + chord[0]) % 12
    r = lo + ((root_pc - lo) % 12)
    return [r + i for i in chord[1]]


def _scale_pitches(plan: Plan, lo: int, hi: int) -> np.ndarray:
    pcs = {(plan.tonic + s) % 12 for s in SCALES[plan.scale]}
    return np.asarray([m for m in range(lo, hi + 1) if m % 12 in pcs])


def _segments(plan: Plan, total_steps: int):
    bar = plan.beats_per_bar * plan.steps_per_beat
    bpc = plan.bars_per_chord if plan.beats_per_bar == 4 else max(1.0, plan.bars_per_chord)
    seg = int(round(bar * bpc))
    i = 0
    for s0 in range(0, total_steps, seg):
        yield s0, seg, plan.chords[i % len(plan.chords)], plan.chords[(i + 1) % len(plan.chords)]
        i += 1


def comp_notes(plan: Plan, pattern: str, instrument: str, total_steps: int, rng: np.random.Generator) -> list[Note]:
    spb, bpb = plan.steps_per_beat, plan.beats_per_bar
    lo = 40 if instrument == "distorted-guitar" else (52 if instrument != "synth-pad" else 48)
    out: list[Note] = []
    strum = 0.012 if instrument in ("guitar", "distorted-guitar") else 0.0
    for s0, seg, chord, _ in _segments(plan, total_steps):
        notes = _voicing(plan, chord, lo)
        beats = seg // spb
        if pattern == "sustain":
            out.append(Note(s0, seg * 0.98, tuple(notes), 0.7))
        elif pattern == "strum_q":
            for b in range(beats):
                out.append(Note(s0 + b * spb, spb * 0.9, tuple(notes), 0.85 if b % 2 == 0 else 0.7, strum_s=strum))
        elif pattern in ("strum_8", "power8"):
            ps = tuple(notes[:2]) if pattern == "power8" else tuple(notes)
            if pattern == "power8" and len(chord[1]) > 2 and chord[1][1] != 7:
                ps = (notes[0], notes[0] + 7)
            for b in range(beats):
                for j, e in enumerate(_eighth_steps(spb)):
                    dur = 1.5 if pattern == "power8" else (spb - e if j else e + 2) * 0.9
                    out.append(Note(s0 + b * spb + e, dur, ps, 0.9 if j == 0 else 0.65,
                                    strum_s=strum * (1 if j == 0 else -1)))
        elif pattern == "pulse":  # the chord repeated on every 8th, the beat louder (pumping piano / chugging guitar)
            soft = float(rng.uniform(0.3, 0.65))
            sub = (0, 2) if spb == 4 else tuple(range(spb))  # 8ths; triplet 8ths in compound meters
            for b in range(beats):
                for j, e in enumerate(sub):
                    nxt = sub[j + 1] if j + 1 < len(sub) else spb
                    out.append(Note(s0 + b * spb + e, (nxt - e) * 0.6, tuple(notes), 0.9 if j == 0 else 0.9 * soft,
                                    strum_s=strum))
        elif pattern == "skank":
            for b in range(beats):
                out.append(Note(s0 + b * spb + 2, 1.0, tuple(notes[-3:]), 0.85, strum_s=0.004))
        elif pattern == "stabs":
            choices = np.arange(0, seg, 2 if spb == 4 else 1)
            k = int(rng.integers(2, 5))
            for s in np.sort(rng.choice(choices, size=min(k, len(choices)), replace=False)):
                out.append(Note(s0 + int(s), 1.2, tuple(notes), 0.85))
        elif pattern == "arp":
            seq = notes + [notes[0] + 12]
            if rng.random() < 0.5:
                seq = seq + seq[-2:0:-1]
            step = 2 if spb == 4 else 1
            for i, s in enumerate(range(0, seg, step)):
                out.append(Note(s0 + s, step * 1.8, (seq[i % len(seq)],), 0.75))
        elif pattern == "jazz_comp":
            positions = np.arange(0, seg, 2 if spb == 4 else 1)
            k = int(rng.integers(1, 4)) * max(1, seg // (bpb * spb))
            for s in np.sort(rng.choice(positions, size=min(k, len(positions)), replace=False)):
                out.append(Note(s0 + int(s), float(rng.choice([1.5, 3.0, 6.0])), tuple(notes), 0.7))
        elif pattern == "block":
            half = max(spb, (seg // 2 // spb) * spb)
            for s in range(0, seg, half):
                out.append(Note(s0 + s, half * 0.95, tuple(notes), 0.75))
        elif pattern == "waltz":
            for b in range(beats):
                if b % bpb == 0:
                    out.append(Note(s0 + b * spb, spb * 0.9, (notes[0] - 12,), 0.85))
                else:
                    out.append(Note(s0 + b * spb, spb * 0.6, tuple(notes[1:]), 0.6))
        else:  # pragma: no cover - programming error
            raise ValueError(pattern)
    return out


def bass_notes(plan: Plan, pattern: str, total_steps: int, rng: np.random.Generator) -> list[Note]:
    spb = plan.steps_per_beat
    out: list[Note] = []
    scale = _scale_pitches(plan, 28, 55)
    for s0, seg, chord, nxt in _segments(plan, total_steps):
        root = 33 + ((plan.tonic + chord[0] - 33) % 12)
        fifth = root + 7
        beats = seg // spb
        if pattern == "long":
            out.append(Note(s0, seg * 0.95, (root,), 0.8))
        elif pattern == "root":
            for b in range(beats):
                out.append(Note(s0 + b * spb, spb * 0.85, (root + (12 if rng.random() < 0.1 else 0),), 0.8))
        elif pattern == "root_fifth":
            for b in range(0, beats, 2 if plan.beats_per_bar == 4 else 3):
                out.append(Note(s0 + b * spb, spb * 0.9, (root if (b // 2) % 2 == 0 else fifth,), 0.85))
        elif pattern == "walking":
            nxt_root = 33 + ((plan.tonic + nxt[0] - 33) % 12)
            tones = [root + i for i in chord[1] if i < 12]
            for b in range(beats):
                if b == 0:
                    p = root
                elif b == beats - 1:
                    p = nxt_root + (1 if rng.random() < 0.5 else -1)
                else:
                    p = int(rng.choice(tones)) if rng.random() < 0.6 else int(rng.choice(scale[(scale >= root - 5) & (scale <= root + 12)]))
                out.append(Note(s0 + b * spb, spb * 0.9, (p,), 0.8 if b % 2 == 0 else 0.7))
        elif pattern in ("octave", "eighths"):
            for b in range(beats):
                for j, e in enumerate(_eighth_steps(spb)):
                    p = root + (12 if (pattern == "octave" and j == 1) else 0)
                    out.append(Note(s0 + b * spb + e, 1.6, (p,), 0.85 if j == 0 else 0.7))
        elif pattern == "sub":
            out.append(Note(s0, spb * 1.5, (root,), 0.9))
            if beats >= 4:
                out.append(Note(s0 + 2 * spb + 2, spb * 1.2, (root if rng.random() < 0.6 else fifth,), 0.8))
            if rng.random() < 0.4 and beats >= 4:
                out.append(Note(s0 + 3 * spb + 2, spb * 0.5, (root + 12,), 0.7))
        elif pattern == "reggae":
            for b in range(beats):
                if b % 2 == 0 and rng.random() < 0.7:
                    out.append(Note(s0 + b * spb, spb * 1.2, (root,), 0.85))
                if rng.random() < 0.6:
                    out.append(Note(s0 + b * spb + 2, 1.5, (int(rng.choice([root, fifth, root + 12, root + 3 if plan.mode == 'minor' else root + 4])),), 0.7))
        else:  # pragma: no cover
            raise ValueError(pattern)
    return out


def lead_notes(plan: Plan, total_steps: int, rng: np.random.Generator) -> list[Note]:
    spb = plan.steps_per_beat
    pitches = _scale_pitches(plan, 62, 86)
    durs = [1, 2, 2, 2, 3, 4, 4, 6, 8] if spb == 4 else [1, 2, 3, 3, 6]
    idx = int(rng.integers(len(pitches) // 3, 2 * len(pitches) // 3))
    pos = int(rng.integers(0, 2 * spb))
    out: list[Note] = []
    while pos < total_steps:
        d = int(rng.choice(durs))
        if rng.random() > 0.2:
            idx = int(np.clip(idx + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(pitches) - 1))
            out.append(Note(pos, d * 0.95, (int(pitches[idx]),), float(rng.uniform(0.6, 0.9))))
        pos += d
    return out


def random_groove(plan: Plan, rng: np.random.Generator) -> list[tuple[int, str, float]]:
    """One bar of a random (often syncopated) groove for tempo sets: ``(step, drum, velocity)``.

    Kick on the downbeat, more kicks on other beats and off-beat steps, snare or clap mostly on
    the back beats (sometimes anticipated by a step), a cymbal layer on every beat, 8th or step,
    with accents on the beats; or (50 %) a one-timbre ostinato on every step or 8th whose accents
    alone mark the beat. Drawn once per clip (``plan.extra["groove"]``), repeated per bar.
    """
    spb, bpb = plan.steps_per_beat, plan.beats_per_bar
    if rng.random() < 0.5:  # a one-timbre ostinato on every step or 8th: only its accents mark the beat
        drum = str(rng.choice(["rim", "hat", "clap", "snare", "open_hat", "kick"]))
        every = int(rng.choice([1, max(1, spb // 2)])) if spb == 4 else 1
        soft = float(rng.uniform(0.25, 0.65))
        pulse = [(st, drum, 1.0 if st % spb == 0 else soft) for st in range(0, bpb * spb, every)]
        return pulse + ([(0, "kick", 0.9)] if drum != "kick" and rng.random() < 0.3 else [])
    out: list[tuple[int, str, float]] = [(0, "kick", 1.0)]
    for st in range(1, bpb * spb):
        on_beat = st % spb == 0
        if rng.random() < (0.3 if on_beat else 0.12):
            out.append((st, "kick", 0.9 if on_beat else 0.7))
    snare = str(rng.choice(["snare", "clap", "rim"]))
    for b in range(bpb):
        back = (b % 2 == 1) if bpb % 2 == 0 else (b > 0)
        if back and rng.random() < 0.85:
            st = b * spb - (1 if rng.random() < 0.15 else 0)
            out.append((st, snare, 0.95))
        elif rng.random() < 0.1:
            out.append((b * spb + int(rng.integers(1, spb)), snare, 0.5))
    cym = str(rng.choice(["hat", "hat", "open_hat", "ride", "hat_pedal"]))
    every = int(rng.choice([spb, max(1, spb // 2), 1] if spb == 4 else [spb, 1]))
    accent = float(rng.uniform(0.0, 0.4))
    for st in range(0, bpb * spb, every):
        out.append((st, cym, 0.65 if st % spb == 0 else 0.65 - accent))
    return out


def drum_notes(plan: Plan, pattern: str, total_steps: int, rng: np.random.Generator) -> list[Note]:
    spb, bpb = plan.steps_per_beat, plan.beats_per_bar
    bar = bpb * spb
    out: list[Note] = []

    def hit(step: float, drum: str, vel: float) -> None:
        out.append(Note(step, 1.0, (), vel, drum=drum))

    n_bars = -(-total_steps // bar)
    if pattern in FEEL_DRUMS:  # tempo sets' real-music feels (issue 23)
        return _feel_drum_notes(plan, pattern, n_bars, rng)
    if pattern == "random":  # tempo sets: one random groove per clip, repeated with small variations
        groove = plan.extra.setdefault("groove", random_groove(plan, rng))
        for k in range(n_bars):
            for st, drum, v in groove:
                if rng.random() < 0.95:
                    hit(k * bar + st, drum, v)
        return out
    off = 2  # the off-beat 8th step (the swung one in simple meters; the 3rd triplet in compound)
    for k in range(n_bars):
        b0 = k * bar
        fill = (k % 4 == 3) and rng.random() < 0.35 and pattern not in ("ride", "brushes")
        if k % 4 == 0 and pattern in ("backbeat", "four_on_floor", "double_kick", "half_time") and rng.random() < 0.5:
            hit(b0, "crash", 0.8)
        for b in range(bpb):
            s = b0 + b * spb
            if fill and b == bpb - 1:
                for j in range(spb):
                    hit(s + j, "snare", 0.5 + 0.4 * j / spb)
                continue
            backbeat = (b % 2 == 1) if bpb == 4 else (b > 0)
            if pattern == "backbeat" or pattern == "shuffle":
                if bpb == 3:
                    hit(s, "kick", 0.9) if b == 0 else hit(s, "snare", 0.6)
                else:
                    hit(s, "snare" if backbeat else "kick", 0.95)
                    if b == 2 and rng.random() < 0.4:
                        hit(s + off, "kick", 0.7)
                for e in _eighth_steps(spb):
                    hit(s + e, "hat", 0.7 if e == 0 else 0.5)
            elif pattern == "four_on_floor":
                hit(s, "kick", 1.0)
                if backbeat:
                    hit(s, "clap" if rng.random() < 0.5 else "snare", 0.9)
                hit(s + off, "open_hat", 0.6)
                if spb == 4:
                    hit(s + 1, "hat", 0.35)
                    hit(s + 3, "hat", 0.35)
            elif pattern == "half_time":
                if b == 0:
                    hit(s, "kick", 1.0)
                if b == 2 or (bpb == 3 and b == 2):
                    hit(s, "snare", 1.0)
                if rng.random() < 0.3:
                    hit(s + off + (1 if spb == 4 else 0), "kick", 0.6)
                for e in range(0, spb, 1 if spb == 3 else 2):
                    hit(s + e, "hat", 0.55)
            elif pattern == "one_drop":
                if b == bpb // 2:
                    hit(s, "kick", 0.95)
                    hit(s, "rim", 0.9)
                for e in _eighth_steps(spb):
                    hit(s + e, "hat", 0.6 if e else 0.45)
            elif pattern == "boom_bap":
                if b == 0 or (b == 2 and rng.random() < 0.7):
                    hit(s, "kick", 1.0)
                if b == 1 and rng.random() < 0.6:
                    hit(s + off + 1 if spb == 4 else s + 2, "kick", 0.75)
                if backbeat:
                    hit(s, "snare", 1.0)
                for e in _eighth_steps(spb):
                    hit(s + e, "hat", 0.6 if e == 0 else 0.45)
            elif pattern == "train":
                if b % 2 == 0:
                    hit(s, "kick", 0.85)
                for j in range(spb):
                    hit(s + j, "snare", 0.95 if (backbeat and j == 0) else 0.3)
            elif pattern == "ride":
                hit(s, "ride", 0.8)
                if backbeat:
                    hit(s, "hat_pedal", 0.5)
                    hit(s + off, "ride", 0.55)  # the "skip" note before the next beat
                if rng.random() < 0.15:
                    hit(s + off, "snare", 0.35)
                if rng.random() < 0.1:
                    hit(s, "kick", 0.5)
            elif pattern == "brushes":
                hit(s, "brush", 0.7)
                if backbeat:
                    hit(s, "snare", 0.35)
                if rng.random() < 0.5:
                    hit(s + off, "ride", 0.35)
            elif pattern == "double_kick":
                for j in range(spb):
                    hit(s + j, "kick", 0.85 if j == 0 else 0.7)
                if backbeat:
                    hit(s, "snare", 1.0)
                hit(s, "ride" if rng.random() < 0.5 else "hat", 0.6)
            else:  # pragma: no cover
                raise ValueError(pattern)
    # ghost notes
    if pattern in ("boom_bap", "backbeat", "shuffle", "one_drop"):
        for s in range(0, n_bars * bar):
            if s % spb and rng.random() < 0.06:
                hit(s, "snare", 0.2)
    return out


#: the drum patterns of :func:`mgr.synth.styles.apply_feel` (tempo sets only)
FEEL_DRUMS = ("backbeat_heavy", "sixteenths", "double_time")


def _feel_drum_notes(plan: Plan, pattern: str, n_bars: int, rng: np.random.Generator) -> list[Note]:
    """The drums of the real-music feels (:func:`mgr.synth.styles.apply_feel`), per bar:

    * ``backbeat_heavy``: kick on 1 and 3 (sometimes a pickup 8th before 3), snare on 2 and 4,
      both loud; cymbals (8th or 16th hats, or a ride on 8ths) at a tenth to a third of their
      velocity, accented on the beat;
    * ``sixteenths``: the same backbeat under hats on every 16th (beat > 8th > 16th);
    * ``double_time``: kick on every beat, snare on every off-beat 8th, soft 16th hats.
    """
    spb, bpb = plan.steps_per_beat, plan.beats_per_bar
    bar = bpb * spb
    off = 2  # the off-beat 8th (3rd triplet in compound meters)
    out: list[Note] = []
    cym = str(rng.choice(["hat", "hat", "ride", "open_hat"])) if pattern == "backbeat_heavy" else "hat"
    every = 1 if pattern in ("sixteenths", "double_time") or spb == 3 else int(rng.choice([1, 2]))
    quiet = float(rng.uniform(0.1, 0.33)) if pattern == "backbeat_heavy" else float(rng.uniform(0.3, 0.55))
    pickup = float(rng.uniform(0.0, 0.6))
    for k in range(n_bars):
        b0 = k * bar
        if k % 4 == 0 and rng.random() < 0.4:
            out.append(Note(b0, 1.0, (), 0.7, drum="crash"))
        for b in range(bpb):
            s = b0 + b * spb
            if pattern == "double_time":
                out.append(Note(s, 1.0, (), 1.0, drum="kick"))
                out.append(Note(s + off, 1.0, (), 0.95, drum="snare"))
            else:
                back = b % 2 == 1
                out.append(Note(s, 1.0, (), 1.0, drum="snare" if back else "kick"))
                if b == 1 and rng.random() < pickup:
                    out.append(Note(s + off, 1.0, (), 0.8, drum="kick"))
            for j in range(0, spb, every):
                v = 1.0 if j == 0 else (0.75 if j == off else 0.55)
                out.append(Note(s + j, 1.0, (), quiet * v, drum=cym))
        for s in range(b0, b0 + bar):  # ghost notes
            if s % spb and rng.random() < 0.04:
                out.append(Note(s, 1.0, (), 0.2, drum="snare"))
    return out


# ------------------------------------------------------------------------------ rendering
class _Kit:
    """The clip's drum kit: each drum synthesized once (on first use) with random tuning."""

    def __init__(self, plan: Plan, sr: int, rng: np.random.Generator):
        self.plan, self.sr, self.rng = plan, sr, rng
        self.samples: dict[str, np.ndarray] = {}

    def __getitem__(self, drum: str) -> np.ndarray:
        x = self.samples.get(drum)
        if x is None:
            x = self.samples[drum] = self._make(drum)
        return x

    def _make(self, drum: str) -> np.ndarray:
        sr, rng = self.sr, self.rng
        if drum == "kick":
            long = self.plan.genre == "hiphop"
            return dsp.kick(sr, rng, f0=float(rng.uniform(45, 65)), decay=float(rng.uniform(0.15, 0.5 if long else 0.3)))
        if drum == "snare":
            return dsp.snare(sr, rng, tone=float(rng.uniform(160, 240)), decay=float(rng.uniform(0.08, 0.2)),
                             snappy=float(rng.uniform(0.4, 0.85)))
        if drum == "hat":
            return dsp.hat(sr, rng, decay=float(rng.uniform(0.02, 0.06)))
        if drum == "hat_pedal":
            return 0.5 * dsp.hat(sr, rng, decay=0.02)
        if drum == "open_hat":
            return dsp.hat(sr, rng, decay=float(rng.uniform(0.15, 0.3)))
        if drum == "ride":
            return dsp.ride(sr, rng, decay=float(rng.uniform(0.5, 1.2)))
        if drum == "crash":
            return dsp.crash(sr, rng)
        if drum == "clap":
            return dsp.clap(sr, rng)
        if drum == "rim":
            return dsp.rim(sr, rng)
        if drum == "brush":
            return dsp.brush(sr, rng, length=min(0.9 * self.plan.beat_s, 0.5))
        raise ValueError(drum)  # pragma: no cover


class _Voice:
    """Renders one instrument's notes (per-part timbre fixed at construction)."""

    PERCUSSIVE = {"guitar", "distorted-guitar", "bass", "upright", "piano", "electric-piano", "bells"}

    def __init__(self, instrument: str, sr: int, rng: np.random.Generator):
        self.inst, self.sr = instrument, sr
        self.brightness = float(rng.uniform(0.35, 0.85))
        self.decay = float(rng.uniform(0.8, 2.5))
        self.lead_wave = str(rng.choice(["square", "saw"]))
        self._cache: dict[tuple[float, int], np.ndarray] = {}

    def note(self, midi: float, dur_s: float, rng: np.random.Generator) -> np.ndarray:
        """One note (read-only array). Notes of equal pitch and length are rendered once per
        part, like a sampler; velocity and timing still vary per note."""
        ring = self.inst in self.PERCUSSIVE
        n = max(32, int(self.sr * (min(dur_s + 0.25, 3.0) if ring else dur_s + 0.05)))
        key = (float(midi), n)
        y = self._cache.get(key)
        if y is None:
            y = self._cache[key] = self._render(float(midi), n, rng)
        return y

    def _render(self, midi: float, n: int, rng: np.random.Generator) -> np.ndarray:
        sr, inst = self.sr, self.inst
        f = float(dsp.midi_to_hz(midi))
        if inst == "guitar":
            y = dsp.karplus_strong(f, n, sr, rng, brightness=self.brightness, decay_s=self.decay)
        elif inst == "distorted-guitar":
            y = dsp.karplus_strong(f, n, sr, rng, brightness=0.8, decay_s=3.0)
        elif inst == "bass":
            y = dsp.karplus_strong(f, n, sr, rng, brightness=0.25 + 0.2 * self.brightness, decay_s=1.5)
        elif inst == "upright":
            y = dsp.karplus_strong(f, n, sr, rng, brightness=0.12, decay_s=0.7)
        elif inst == "synth":
            y = dsp.synth_bass_note(f, n, sr, rng)
        elif inst == "sub":
            y = dsp.sub_bass_note(f, n, sr, rng)
        elif inst == "piano":
            y = dsp.additive_piano(f, n, sr, rng, decay_s=self.decay)
        elif inst == "electric-piano":
            y = dsp.fm_epiano(f, n, sr, rng, decay_s=self.decay)
        elif inst == "bells":
            y = dsp.fm_bell(f, n, sr, rng, decay_s=self.decay)
        elif inst == "organ":
            y = dsp.organ_note(f, n, sr, rng)
        elif inst == "strings":
            y = dsp.strings_note(f, n, sr, rng)
        elif inst == "brass":
            y = dsp.brass_note(f, n, sr, rng)
        elif inst == "synth-pad":
            y = dsp.pad_note(f, n, sr, rng)
        elif inst == "synth-lead":
            y = dsp.lead_note(f, n, sr, rng, kind=self.lead_wave)
        else:  # pragma: no cover
            raise ValueError(inst)
        fade = min(n, int(0.02 * sr))
        y[n - fade :] *= np.linspace(1.0, 0.0, fade)
        return y


def _place(plan: Plan, step: float, sr: int, jitter_s: float) -> int:
    return int(round((step_time(plan, step) - plan.phase_s + jitter_s) * sr))


def render(plan: Plan, sr: int, duration_s: float, rng: np.random.Generator, *, keep_stems: bool = False) -> Rendered:
    """Render ``plan`` to a mono clip of ``duration_s`` seconds."""
    n = int(round(duration_s * sr))
    bar_steps = plan.beats_per_bar * plan.steps_per_beat
    bar_s = plan.beats_per_bar * plan.beat_s
    n_bars = int(np.ceil((plan.phase_s + duration_s) / bar_s)) + 1
    total_steps = n_bars * bar_steps
    hum = plan.humanise_ms / 1000.0
    tags: set[str] = set()
    swung = False
    stems: dict[str, np.ndarray] = {}

    def vel(v: float) -> float:
        return float(np.clip(v * (1.0 + rng.normal(0.0, plan.velocity_sd)), 0.05, 1.2))

    if plan.drums:
        kit = _Kit(plan, sr, rng)
        buf = np.zeros(n)
        used = False
        for nt in drum_notes(plan, plan.drums, total_steps, rng):
            x = kit[nt.drum]
            start = _place(plan, nt.step, sr, rng.normal(0.0, 0.6 * hum))
            if start < n and start + x.shape[0] > 0:
                dsp.add_at(buf, x, start, vel(nt.vel))
                used = True
                swung |= plan.swing and _is_offbeat(plan, nt.step) and 0 <= start < n
        if used:
            stems["drums"] = _level(buf, plan.drum_level_db)
            tags.add("drums")

    for i, part in enumerate(plan.parts):
        if part.role == "comp":
            notes = comp_notes(plan, part.pattern, part.instrument, total_steps, rng)
        elif part.role == "bass":
            notes = bass_notes(plan, part.pattern, total_steps, rng)
        else:
            notes = lead_notes(plan, total_steps, rng)
        voice = _Voice(part.instrument, sr, rng)
        buf = np.zeros(n)
        used = False
        for nt in notes:
            t0 = _place(plan, nt.step, sr, rng.normal(0.0, hum))
            dur_s = float(step_time(plan, nt.step + nt.dur_steps) - step_time(plan, nt.step))
            if t0 >= n or t0 + int((dur_s + 3.0) * sr) <= 0:
                continue
            v = vel(nt.vel)
            for j, p in enumerate(nt.pitches):
                start = t0 + int(round(j * abs(nt.strum_s) * sr))
                x = voice.note(p, dur_s, rng)
                if start < n and start + x.shape[0] > 0:
                    dsp.add_at(buf, x, start, v / np.sqrt(len(nt.pitches)))
                    used = True
                    swung |= plan.swing and _is_offbeat(plan, nt.step) and 0 <= start < n
        if not used:
            continue
        if part.instrument == "distorted-guitar":
            buf = dsp.distortion(buf, sr, plan.drive)
        elif part.tag == "bass":
            buf = dsp.lowpass(buf, 1800.0, sr)
        stems[f"{part.role}:{part.instrument}"] = _level(buf, part.level_db)
        tags.add(part.tag)
    if swung:
        tags.add("swing")

    mix = np.zeros(n)
    for x in stems.values():
        mix += x
    mix = dsp.reverb(mix, sr, rng, rt60=plan.rt60, wet=plan.reverb_wet)
    mix = dsp.highpass(mix, plan.highpass_hz, sr)
    mix = dsp.lowpass(mix, plan.lowpass_hz, sr)
    peak = np.abs(mix).max()
    if peak > 0:
        mix *= 10 ** (plan.peak_db / 20) / peak
    mix += 10 ** (plan.noise_db / 20) * rng.standard_normal(n)
    audio = np.clip(mix, -1.0, 1.0).astype(np.float32)
    return Rendered(audio=audio, tags=sorted(tags), stems=stems if keep_stems else {})


def _level(x: np.ndarray, level_db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2)))
    return x * (0.1 * 10 ** (level_db / 20) / rms) if rms > 0 else x


def render_click(plan: Plan, sr: int, duration_s: float) -> np.ndarray:
    """The metronome alone: a click on every beat of the plan's exact grid (accented downbeats)."""
    n = int(round(duration_s * sr))
    buf = np.zeros(n)
    for t in beat_times(plan, duration_s):
        k = int(round((t + plan.phase_s) / plan.beat_s))
        dsp.add_at(buf, dsp.click(sr, accent=(k % plan.beats_per_bar == 0)), int(round(t * sr)))
    return (0.9 * buf).astype(np.float32)
