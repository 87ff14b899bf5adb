"""Genre style templates: each genre is a distribution over song plans, not a fixed loop.

:func:`sample_plan` draws a :class:`Plan` (tempo, meter, swing, key, chord progression, drum
pattern family, bass style, comping instruments and patterns, lead, mix and "recording"
settings) from a genre's template. Templates deliberately overlap (tempo ranges, instruments,
progressions are shared between genres) so that no single label classifies the genre.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")

# Instruments a part may use; each is also the tag it contributes when it sounds.
INSTRUMENT_TAGS = (
    "bass",
    "bells",
    "brass",
    "distorted-guitar",
    "drums",
    "electric-piano",
    "guitar",
    "organ",
    "piano",
    "strings",
    "synth-lead",
    "synth-pad",
)
TAG_VOCAB = tuple(sorted((*INSTRUMENT_TAGS, "swing")))

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

MAJ = (0, 4, 7)
MIN = (0, 3, 7)
DOM7 = (0, 4, 7, 10)
MAJ7 = (0, 4, 7, 11)
MIN7 = (0, 3, 7, 10)
POW = (0, 7, 12)
DOM9 = (0, 4, 10, 14)
DOM13 = (0, 4, 10, 21)
MIN9 = (0, 3, 10, 14)
MAJ9 = (0, 4, 11, 14)
SIX9 = (0, 4, 9, 14)

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "pent_major": (0, 2, 4, 7, 9),
    "pent_minor": (0, 3, 5, 7, 10),
}

Chord = tuple[int, tuple[int, ...]]  # (root in semitones above the tonic, intervals)


def _progression(name: str, rng: np.random.Generator) -> tuple[str, list[Chord]]:
    """A chord-progression family -> (mode, one chord per segment)."""
    if name == "blues12":
        second = (5, DOM7) if rng.random() < 0.4 else (0, DOM7)  # quick change
        return "major", [(0, DOM7), second, (0, DOM7), (0, DOM7), (5, DOM7), (5, DOM7), (0, DOM7), (0, DOM7),
                         (7, DOM7), (5, DOM7), (0, DOM7), (7, DOM7)]
    if name == "I-V-vi-IV":
        prog = [(0, MAJ), (7, MAJ), (9, MIN), (5, MAJ)]
        k = int(rng.integers(0, 4)) if rng.random() < 0.4 else 0  # rotations: vi-IV-I-V etc.
        return "major", prog[k:] + prog[:k]
    if name == "I-IV-V":
        return "major", [[(0, MAJ), (5, MAJ), (7, MAJ), (0, MAJ)], [(0, MAJ), (0, MAJ), (5, MAJ), (7, MAJ)],
                         [(0, MAJ), (5, MAJ), (0, MAJ), (7, MAJ)]][int(rng.integers(0, 3))]
    if name == "ii-V-I":
        ii = (2, MIN9 if rng.random() < 0.5 else MIN7)
        v = (7, [DOM7, DOM9, DOM13][int(rng.integers(0, 3))])
        i = (0, [MAJ7, MAJ9, SIX9][int(rng.integers(0, 3))])
        last = (9, DOM7) if rng.random() < 0.5 else i
        return "major", [ii, v, i, last]
    if name == "I-vi-ii-V":
        ext = rng.random() < 0.5
        return "major", [(0, MAJ7 if ext else MAJ), (9, MIN7 if ext else MIN), (2, MIN7 if ext else MIN), (7, DOM7)]
    if name == "power":
        return "minor", [[(0, POW), (8, POW), (10, POW), (0, POW)], [(0, POW), (3, POW), (5, POW), (3, POW)],
                         [(0, POW), (10, POW), (5, POW), (0, POW)], [(0, POW), (1, POW), (0, POW), (7, POW)]][
            int(rng.integers(0, 4))]
    if name == "minor-loop":
        return "minor", [[(0, MIN7), (5, MIN7)], [(0, MIN), (8, MAJ), (3, MAJ), (10, MAJ)],
                         [(0, MIN7), (10, DOM7), (8, MAJ7), (7, MIN7)], [(0, MIN9), (5, DOM9)]][int(rng.integers(0, 4))]
    if name == "two-chord":
        return ("major", [(0, MAJ), (5, MAJ)]) if rng.random() < 0.5 else ("minor", [(0, MIN), (10, MAJ)])
    if name == "classical":
        return [("major", [(0, MAJ), (5, MAJ), (7, DOM7), (0, MAJ)]), ("major", [(0, MAJ), (9, MIN), (2, MIN), (7, DOM7)]),
                ("minor", [(0, MIN), (5, MIN), (7, DOM7), (0, MIN)]), ("minor", [(0, MIN), (8, MAJ), (2, MIN), (7, DOM7)])][
            int(rng.integers(0, 4))]
    raise ValueError(name)  # pragma: no cover


@dataclass
class Part:
    """One voice of the arrangement: an instrument playing a pattern."""

    role: str  # "comp" | "bass" | "lead"
    instrument: str  # a key of INSTRUMENT_TAGS (the tag it contributes) or a bass flavour
    pattern: str
    level_db: float
    tag: str


@dataclass
class Plan:
    genre: str
    tempo_bpm: float
    beats_per_bar: int
    steps_per_beat: int  # 4 (16ths) in simple meters, 3 (triplet 8ths) in compound meters
    meter: str
    swing_ratio: float  # where the off-beat 8th falls within the beat (0.5 = straight)
    tonic: int  # pitch class 0..11
    mode: str
    progression_family: str
    chords: list[Chord]
    bars_per_chord: float
    scale: str
    drums: str | None
    drum_level_db: float
    parts: list[Part]
    humanise_ms: float
    velocity_sd: float
    phase_s: float  # the clip starts this far into the first bar
    rt60: float
    reverb_wet: float
    lowpass_hz: float
    highpass_hz: float
    noise_db: float
    drive: float
    peak_db: float
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    @property
    def swing(self) -> bool:
        return self.steps_per_beat == 4 and self.swing_ratio > 0.5

    @property
    def beat_s(self) -> float:
        return 60.0 / self.tempo_bpm


# --------------------------------------------------------------------------- templates
# tempo: (mean, sd, lo, hi) of a truncated normal; all the ranges overlap.
# meters: meter -> weight. swing: (probability, lo, hi) of the swing ratio.
# comp: instrument -> (probability, patterns); lead: instrument -> weight ("" = no lead).
STYLES: dict[str, dict] = {
    "blues": dict(
        tempo=(96, 22, 58, 150), meters={"4/4": 0.6, "12/8": 0.4}, swing=(0.75, 0.6, 0.68),
        prog={"blues12": 0.8, "I-IV-V": 0.2}, scale=["blues", "pent_minor", "mixolydian"],
        drums={"backbeat": 0.45, "shuffle": 0.25, "ride": 0.2, "": 0.1},
        bass={"walking": 0.4, "root_fifth": 0.3, "root": 0.3}, bass_instr={"bass": 0.6, "upright": 0.4},
        comp={"guitar": (0.55, ["strum_q", "jazz_comp"]), "distorted-guitar": (0.2, ["strum_8", "strum_q"]),
              "piano": (0.35, ["block", "jazz_comp"]), "organ": (0.3, ["sustain"]), "electric-piano": (0.15, ["jazz_comp"])},
        lead={"guitar": 0.25, "distorted-guitar": 0.2, "synth-lead": 0.15, "brass": 0.15, "": 0.25},
        humanise=12, bars_per_chord=[1.0],
    ),
    "classical": dict(
        tempo=(92, 28, 50, 160), meters={"4/4": 0.55, "3/4": 0.45}, swing=(0.0, 0.5, 0.5),
        prog={"classical": 0.7, "I-vi-ii-V": 0.15, "I-IV-V": 0.15}, scale=["major"],
        drums={"": 1.0}, bass={"long": 0.6, "root": 0.4}, bass_instr={"strings": 0.6, "piano": 0.4},
        comp={"strings": (0.6, ["sustain", "arp"]), "piano": (0.55, ["arp", "block", "waltz"]), "bells": (0.1, ["arp"]),
              "organ": (0.1, ["sustain"]), "brass": (0.12, ["sustain"]), "guitar": (0.12, ["arp"])},
        lead={"strings": 0.35, "piano": 0.15, "brass": 0.12, "bells": 0.08, "": 0.3},
        humanise=18, bars_per_chord=[1.0, 0.5],
    ),
    "country": dict(
        tempo=(118, 22, 75, 170), meters={"4/4": 0.8, "3/4": 0.2}, swing=(0.2, 0.56, 0.62),
        prog={"I-IV-V": 0.6, "I-V-vi-IV": 0.3, "two-chord": 0.1}, scale=["pent_major", "major"],
        drums={"train": 0.4, "backbeat": 0.35, "brushes": 0.15, "": 0.1},
        bass={"root_fifth": 0.7, "walking": 0.15, "root": 0.15}, bass_instr={"bass": 0.8, "upright": 0.2},
        comp={"guitar": (0.85, ["strum_q", "strum_8"]), "piano": (0.3, ["block", "strum_q"]),
              "strings": (0.12, ["sustain"]), "organ": (0.1, ["sustain"]), "distorted-guitar": (0.08, ["strum_8"])},
        lead={"strings": 0.3, "guitar": 0.3, "synth-lead": 0.1, "piano": 0.1, "": 0.2},
        humanise=10, bars_per_chord=[1.0, 2.0],
    ),
    "disco": dict(
        tempo=(118, 8, 100, 135), meters={"4/4": 1.0}, swing=(0.05, 0.55, 0.58),
        prog={"minor-loop": 0.55, "ii-V-I": 0.2, "I-V-vi-IV": 0.25}, scale=["dorian", "minor", "major"],
        drums={"four_on_floor": 0.9, "backbeat": 0.1},
        bass={"octave": 0.7, "root": 0.3}, bass_instr={"bass": 0.6, "synth": 0.4},
        comp={"strings": (0.5, ["sustain", "stabs"]), "guitar": (0.45, ["stabs", "strum_8"]), "electric-piano": (0.35, ["stabs", "jazz_comp"]),
              "synth-pad": (0.3, ["sustain"]), "brass": (0.3, ["stabs"]), "piano": (0.15, ["stabs"])},
        lead={"strings": 0.2, "synth-lead": 0.25, "brass": 0.15, "bells": 0.1, "": 0.3},
        humanise=4, bars_per_chord=[1.0, 2.0],
    ),
    "hiphop": dict(
        tempo=(90, 9, 68, 112), meters={"4/4": 1.0}, swing=(0.6, 0.56, 0.66),
        prog={"minor-loop": 0.7, "ii-V-I": 0.15, "two-chord": 0.15}, scale=["minor", "pent_minor", "dorian"],
        drums={"boom_bap": 0.7, "half_time": 0.2, "backbeat": 0.1},
        bass={"sub": 0.6, "root": 0.4}, bass_instr={"sub": 0.6, "bass": 0.25, "synth": 0.15},
        comp={"electric-piano": (0.45, ["jazz_comp", "sustain"]), "synth-pad": (0.35, ["sustain"]), "piano": (0.3, ["block", "jazz_comp"]),
              "strings": (0.2, ["sustain", "stabs"]), "bells": (0.25, ["arp"]), "organ": (0.08, ["sustain"]), "guitar": (0.1, ["arp"])},
        lead={"bells": 0.2, "synth-lead": 0.2, "brass": 0.1, "": 0.5},
        humanise=9, bars_per_chord=[1.0, 2.0],
    ),
    "jazz": dict(
        tempo=(140, 40, 70, 230), meters={"4/4": 0.8, "3/4": 0.2}, swing=(0.85, 0.6, 0.68),
        prog={"ii-V-I": 0.6, "I-vi-ii-V": 0.3, "blues12": 0.1}, scale=["major", "dorian", "mixolydian"],
        drums={"ride": 0.6, "brushes": 0.3, "": 0.1},
        bass={"walking": 0.85, "root_fifth": 0.15}, bass_instr={"upright": 0.8, "bass": 0.2},
        comp={"piano": (0.65, ["jazz_comp"]), "electric-piano": (0.25, ["jazz_comp", "sustain"]), "guitar": (0.3, ["jazz_comp", "strum_q"]),
              "organ": (0.12, ["sustain", "jazz_comp"]), "bells": (0.15, ["jazz_comp"])},
        lead={"brass": 0.4, "piano": 0.1, "bells": 0.15, "guitar": 0.1, "": 0.25},
        humanise=14, bars_per_chord=[1.0, 0.5],
    ),
    "metal": dict(
        tempo=(140, 35, 80, 210), meters={"4/4": 0.85, "12/8": 0.15}, swing=(0.0, 0.5, 0.5),
        prog={"power": 0.85, "minor-loop": 0.15}, scale=["minor", "pent_minor"],
        drums={"double_kick": 0.55, "backbeat": 0.3, "half_time": 0.15},
        bass={"eighths": 0.8, "root": 0.2}, bass_instr={"bass": 0.85, "synth": 0.15},
        comp={"distorted-guitar": (0.97, ["power8", "strum_q", "sustain"]), "strings": (0.15, ["sustain"]),
              "synth-pad": (0.1, ["sustain"]), "organ": (0.08, ["sustain"]), "piano": (0.05, ["arp"])},
        lead={"distorted-guitar": 0.35, "synth-lead": 0.1, "": 0.55},
        humanise=5, bars_per_chord=[1.0, 2.0, 0.5],
    ),
    "pop": dict(
        tempo=(112, 18, 75, 150), meters={"4/4": 0.9, "3/4": 0.1}, swing=(0.1, 0.56, 0.6),
        prog={"I-V-vi-IV": 0.6, "minor-loop": 0.2, "I-IV-V": 0.2}, scale=["major", "pent_major"],
        drums={"backbeat": 0.5, "four_on_floor": 0.35, "half_time": 0.1, "": 0.05},
        bass={"root": 0.45, "octave": 0.2, "root_fifth": 0.2, "sub": 0.15}, bass_instr={"bass": 0.5, "synth": 0.4, "sub": 0.1},
        comp={"piano": (0.4, ["block", "arp", "strum_q"]), "synth-pad": (0.4, ["sustain"]), "guitar": (0.35, ["strum_8", "strum_q", "arp"]),
              "electric-piano": (0.2, ["block", "stabs"]), "strings": (0.2, ["sustain"]), "distorted-guitar": (0.1, ["strum_8", "power8"]),
              "bells": (0.1, ["arp"])},
        lead={"synth-lead": 0.35, "bells": 0.15, "piano": 0.1, "guitar": 0.1, "": 0.3},
        humanise=6, bars_per_chord=[1.0, 2.0],
    ),
    "reggae": dict(
        tempo=(80, 10, 60, 108), meters={"4/4": 1.0}, swing=(0.35, 0.55, 0.62),
        prog={"two-chord": 0.5, "I-IV-V": 0.25, "I-V-vi-IV": 0.25}, scale=["major", "pent_minor", "dorian"],
        drums={"one_drop": 0.75, "backbeat": 0.15, "four_on_floor": 0.1},
        bass={"reggae": 0.8, "root": 0.2}, bass_instr={"bass": 0.7, "synth": 0.2, "sub": 0.1},
        comp={"guitar": (0.75, ["skank"]), "organ": (0.55, ["skank", "sustain"]), "piano": (0.25, ["skank"]),
              "electric-piano": (0.15, ["skank"]), "brass": (0.12, ["stabs"]), "synth-pad": (0.1, ["sustain"])},
        lead={"brass": 0.2, "synth-lead": 0.15, "bells": 0.1, "guitar": 0.1, "": 0.45},
        humanise=9, bars_per_chord=[1.0, 2.0],
    ),
    "rock": dict(
        tempo=(126, 24, 80, 180), meters={"4/4": 0.9, "12/8": 0.1}, swing=(0.08, 0.56, 0.6),
        prog={"I-IV-V": 0.35, "power": 0.3, "I-V-vi-IV": 0.25, "blues12": 0.1}, scale=["pent_minor", "major", "mixolydian"],
        drums={"backbeat": 0.75, "four_on_floor": 0.1, "double_kick": 0.05, "half_time": 0.1},
        bass={"eighths": 0.55, "root": 0.3, "root_fifth": 0.15}, bass_instr={"bass": 0.9, "synth": 0.1},
        comp={"distorted-guitar": (0.7, ["power8", "strum_8", "strum_q"]), "guitar": (0.4, ["strum_8", "strum_q", "arp"]),
              "piano": (0.2, ["block", "strum_q"]), "organ": (0.2, ["sustain"]), "strings": (0.05, ["sustain"]),
              "synth-pad": (0.05, ["sustain"])},
        lead={"distorted-guitar": 0.3, "guitar": 0.1, "synth-lead": 0.1, "": 0.5},
        humanise=8, bars_per_chord=[1.0, 2.0],
    ),
}

# Mix level (dB) means per role; each draw adds N(0, 2.5 dB).
_LEVELS = {"comp": -3.0, "bass": -4.0, "lead": -2.0, "drums": -1.0}

# Production habits per genre (the "recording"): level offsets (dB) for drums and bass, and
# ranges for the low-pass corner (Hz, log-uniform), reverb time/wetness and guitar drive.
# They overlap on purpose; the draws within them are what varies a clip's recording.
_PRODUCTION = {
    "blues": dict(drums=-2, bass=0, lowpass=(3000, 8000), rt60=(0.4, 1.5), wet=(0.05, 0.3), drive=(3, 10)),
    "classical": dict(drums=0, bass=-2, lowpass=(4000, 10000), rt60=(1.2, 2.5), wet=(0.2, 0.45), drive=(3, 6)),
    "country": dict(drums=-2, bass=0, lowpass=(4500, 10000), rt60=(0.3, 1.2), wet=(0.05, 0.25), drive=(3, 8)),
    "disco": dict(drums=1, bass=2, lowpass=(6000, 11000), rt60=(0.4, 1.2), wet=(0.05, 0.25), drive=(3, 8)),
    "hiphop": dict(drums=3, bass=4, lowpass=(4000, 10000), rt60=(0.2, 0.8), wet=(0.0, 0.15), drive=(3, 8)),
    "jazz": dict(drums=-3, bass=0, lowpass=(3000, 8000), rt60=(0.5, 1.6), wet=(0.05, 0.3), drive=(2, 5)),
    "metal": dict(drums=1, bass=-1, lowpass=(6000, 11000), rt60=(0.2, 1.0), wet=(0.0, 0.2), drive=(15, 40)),
    "pop": dict(drums=1, bass=1, lowpass=(6000, 11000), rt60=(0.4, 1.5), wet=(0.05, 0.3), drive=(4, 12)),
    "reggae": dict(drums=0, bass=4, lowpass=(3500, 9000), rt60=(0.6, 2.0), wet=(0.1, 0.4), drive=(3, 8)),
    "rock": dict(drums=1, bass=0, lowpass=(5000, 11000), rt60=(0.3, 1.3), wet=(0.05, 0.25), drive=(8, 25)),
}


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _trunc_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    for _ in range(100):
        x = rng.normal(mean, sd)
        if lo <= x <= hi:
            return float(x)
    return float(np.clip(mean, lo, hi))


def sample_plan(genre: str, rng: np.random.Generator) -> Plan:
    """Draw one song plan from ``genre``'s template."""
    st = STYLES[genre]
    prod = _PRODUCTION[genre]
    tempo = round(_trunc_normal(rng, *st["tempo"]), 2)
    meter = _choice(rng, st["meters"])
    bpb, spb = {"4/4": (4, 4), "3/4": (3, 4), "12/8": (4, 3)}[meter]
    p_swing, s_lo, s_hi = st["swing"]
    swing_ratio = float(rng.uniform(s_lo, s_hi)) if (spb == 4 and rng.random() < p_swing) else 0.5
    fam = _choice(rng, st["prog"])
    mode, chords = _progression(fam, rng)
    scale = str(rng.choice(st["scale"]))
    if mode == "minor" and scale in ("major", "pent_major", "mixolydian"):
        scale = "minor"
    drums = _choice(rng, st["drums"]) or None
    if drums == "shuffle" and spb != 3:
        drums = "backbeat"

    parts: list[Part] = []
    comp_opts = st["comp"]
    for inst, (p, patterns) in comp_opts.items():
        if rng.random() < p:
            pat = str(rng.choice(patterns))
            parts.append(Part("comp", inst, pat, _LEVELS["comp"] + rng.normal(0, 2.5), inst))
    if not any(pt.role == "comp" for pt in parts):
        inst = max(comp_opts, key=lambda k: comp_opts[k][0])
        parts.append(Part("comp", inst, str(rng.choice(comp_opts[inst][1])), _LEVELS["comp"], inst))
    bass_style = _choice(rng, st["bass"])
    bass_instr = _choice(rng, st["bass_instr"])
    bass_tag = bass_instr if bass_instr in ("strings", "piano") else "bass"
    parts.append(Part("bass", bass_instr, bass_style, _LEVELS["bass"] + prod["bass"] + rng.normal(0, 2.5), bass_tag))
    lead = _choice(rng, st["lead"])
    if lead:
        parts.append(Part("lead", lead, "melody", _LEVELS["lead"] + rng.normal(0, 2.5), lead))

    return Plan(
        genre=genre,
        tempo_bpm=tempo,
        beats_per_bar=bpb,
        steps_per_beat=spb,
        meter=meter,
        swing_ratio=swing_ratio,
        tonic=int(rng.integers(0, 12)),
        mode=mode,
        progression_family=fam,
        chords=chords,
        bars_per_chord=float(rng.choice(st["bars_per_chord"])),
        scale=scale,
        drums=drums,
        drum_level_db=_LEVELS["drums"] + prod["drums"] + float(rng.normal(0, 2.5)),
        parts=parts,
        humanise_ms=float(st["humanise"] * rng.uniform(0.5, 1.5)),
        velocity_sd=float(rng.uniform(0.05, 0.15)),
        phase_s=float(rng.uniform(0, bpb * 60.0 / tempo)),
        rt60=float(rng.uniform(*prod["rt60"])),
        reverb_wet=float(rng.uniform(*prod["wet"])),
        lowpass_hz=float(np.exp(rng.uniform(np.log(prod["lowpass"][0]), np.log(prod["lowpass"][1])))),
        highpass_hz=float(rng.uniform(20.0, 150.0)),
        noise_db=float(rng.uniform(-85.0, -62.0)),
        drive=float(rng.uniform(*prod["drive"])),
        peak_db=float(rng.uniform(-6.0, -0.5)),
    )


# ------------------------------------------------------------------------- tempo sets (issue 14)
#: meters of the tempo sets: (beats per bar, steps per beat); 6/8 counts dotted quarters
TEMPO_METERS = {"4/4": (4, 4), "3/4": (3, 4), "12/8": (4, 3), "6/8": (2, 3), "2/4": (2, 4)}


#: comping instruments that can play the accented 8th pulse of :func:`sample_tempo_plan`
PULSE_INSTRUMENTS = ("piano", "electric-piano", "guitar", "distorted-guitar", "organ")


def sample_tempo_plan(genre: str, rng: np.random.Generator, tempo_range: tuple[float, float] = (50.0, 220.0),
                      pulse: bool = True, feel: str | None = None) -> Plan:
    """A plan of ``genre``'s style with a widened rhythmic vocabulary, for tempo training/testing.

    The style keeps its own instruments, grooves and progressions (so holding a style out holds
    its grooves out), but: the tempo is log-uniform over ``tempo_range`` half of the time (else
    the style's own tempo, scaled by up to +-20 %, clipped to the range); a fifth of the plans
    redraw the meter (incl. 6/8 and 2/4), a fifth drop the drums (drum-less music: the beat is
    only in the comping, bass and melody), a third of the others play a random, often syncopated
    groove (:func:`mgr.synth.render.random_groove`), swing is drawn for any style 15 % of the time, and the
    "room" is wider: longer reverbs, more of them, and noise up to -30 dBFS. Finally, one comping
    part plays the accented ``pulse`` (its chord on every 8th, the beat louder, the off-beats in
    the same timbre but softer: a pumping piano, a chugging guitar) in half of the drum-less plans
    and 15 % of the others, and half of those drum-less ones keep only that pulse and the melody:
    music whose beat is marked by loudness alone, as with 8th-note hi-hats over a quarter-note
    beat. ``pulse=False`` leaves this step (and its random draws) out: the click sets use it, so
    their plans and audio do not depend on it.

    Last (issue 23, also left out with ``pulse=False``), half of the plans get one of the
    real-music :data:`FEELS` (:func:`apply_feel`; ``feel`` forces one, ``"none"`` none): the
    rhythms whose loudest periodicity is not the annotated beat.
    """
    plan = sample_plan(genre, rng)
    lo, hi = float(tempo_range[0]), float(tempo_range[1])
    if rng.random() < 0.5:
        tempo = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    else:
        tempo = float(np.clip(plan.tempo_bpm * rng.uniform(0.8, 1.2), lo, hi))
    plan.tempo_bpm = round(tempo, 2)
    if rng.random() < 0.2:
        plan.meter = _choice(rng, {"4/4": 0.35, "3/4": 0.25, "12/8": 0.15, "6/8": 0.15, "2/4": 0.1})
        plan.beats_per_bar, plan.steps_per_beat = TEMPO_METERS[plan.meter]
        if plan.drums == "shuffle" and plan.steps_per_beat != 3:
            plan.drums = "backbeat"
    if plan.steps_per_beat == 4 and rng.random() < 0.15:
        plan.swing_ratio = float(rng.uniform(0.56, 0.68))
    elif plan.steps_per_beat != 4:
        plan.swing_ratio = 0.5
    if plan.drums and rng.random() < 0.2:
        plan.drums = None
    elif rng.random() < 0.35:  # a random (often syncopated) groove instead of the style's own
        plan.drums = "random"
        if rng.random() < 0.3:  # percussion with at most a melody: the groove alone carries the beat
            plan.parts = [pt for pt in plan.parts if pt.role == "lead"]
    plan.phase_s = float(rng.uniform(0, plan.beats_per_bar * 60.0 / plan.tempo_bpm))
    plan.rt60 = float(plan.rt60 * rng.uniform(0.7, 1.8))
    plan.reverb_wet = float(min(0.6, plan.reverb_wet + rng.uniform(0.0, 0.2)))
    plan.noise_db = float(rng.uniform(-85.0, -30.0))
    plan.humanise_ms = float(plan.humanise_ms * rng.uniform(0.5, 1.5))
    # accented pulse comping (a piano pumping 8ths, a guitar chugging): the subdivisions in the
    # beat's timbre, only softer; without drums it is often the only metrical cue
    if pulse and rng.random() < (0.5 if plan.drums is None else 0.15):
        comps = [i for i, pt in enumerate(plan.parts) if pt.role == "comp" and pt.instrument in PULSE_INSTRUMENTS]
        if comps:
            i = comps[int(rng.integers(len(comps)))]
            plan.parts[i] = replace(plan.parts[i], pattern="pulse")
            if plan.drums is None and rng.random() < 0.5:  # a solo piano / guitar: the pulse and a melody alone
                plan.parts = [pt for j, pt in enumerate(plan.parts) if j == i or pt.role == "lead"]
    if pulse:
        if feel is None:
            feel = _choice(rng, FEEL_WEIGHTS) if rng.random() < FEEL_PROBABILITY else "none"
        if feel != "none":
            apply_feel(plan, feel, rng, tempo_range)
    return plan


# ------------------------------------------------------------- real-music feels (issue 23)
#: rhythms of real recordings whose loudest periodicity is not the annotated beat (see apply_feel)
FEELS = ("backbeat_heavy", "sixteenths", "half_time", "double_time", "dense", "rubato")
#: how often each feel is drawn, given that a plan gets one (FEEL_PROBABILITY of the tempo plans)
FEEL_WEIGHTS = {"backbeat_heavy": 0.3, "sixteenths": 0.15, "half_time": 0.1, "double_time": 0.1, "dense": 0.2,
                "rubato": 0.15}
FEEL_PROBABILITY = 0.5
#: the slow pulses under busy 16th hats (BPM): where a hi-hat's 16ths are as fast as a quick song's 8ths
SLOW_PULSE_BPM = (50.0, 95.0)
#: extra comping of the dense arrangements: (instrument, pattern)
DENSE_PARTS = (("synth-pad", "sustain"), ("strings", "sustain"), ("guitar", "strum_8"), ("piano", "arp"),
               ("organ", "sustain"), ("brass", "stabs"), ("electric-piano", "jazz_comp"))


def apply_feel(plan: Plan, feel: str, rng: np.random.Generator, tempo_range: tuple[float, float] = (50.0, 220.0)) -> Plan:
    """Give a tempo plan one of the :data:`FEELS`; the label stays ``plan.tempo_bpm``, the beat.

    * ``backbeat_heavy``: rock / pop as mixed on records: kick on 1 and 3, snare on 2 and 4, both
      loud, the cymbals 10-20 dB down (8ths, 16ths or a washy ride) -- the kick band alone and the
      snare band alone repeat every *two* beats, only together do they mark the beat;
    * ``sixteenths``: a slow pulse (:data:`SLOW_PULSE_BPM`) under busy 16th hi-hats (accents on the
      beat): the hats run at four times the beat, the kick / snare backbeat at half of it;
    * ``half_time``: the half-time feel (kick on 1, snare on 3 of the bar, 8th hats): the drums
      sound at half the beat the hats, bass and chords keep;
    * ``double_time``: the double-time (two-step) feel: kick on every beat, snare on every off-beat
      8th, soft 16th hats: the drums alternate twice per beat over chords and bass at the beat;
    * ``dense``: 2-3 more comping parts (pads, strings, strummed 8ths, arpeggios, stabs) over the
      groove, more room and noise: the beat is one layer among many;
    * ``rubato``: drum-less acoustic playing whose tempo drifts smoothly (+-2-5 % over 6-16 beats,
      ``plan.extra["rubato"]``; the mean is the label): no exact grid to lock on to.
    """
    if feel not in FEELS:
        raise ValueError(f"unknown feel {feel!r} (known: {', '.join(FEELS)})")
    plan.extra["feel"] = feel
    if feel in ("backbeat_heavy", "sixteenths", "double_time"):
        meter = "4/4" if feel != "backbeat_heavy" or rng.random() < 0.8 else "12/8"
        plan.meter = meter
        plan.beats_per_bar, plan.steps_per_beat = TEMPO_METERS[meter]
        if plan.steps_per_beat != 4:
            plan.swing_ratio = 0.5
        plan.drums = feel
        plan.drum_level_db = float(plan.drum_level_db + rng.uniform(1.0, 4.0))
        if feel == "sixteenths":
            lo, hi = max(float(tempo_range[0]), SLOW_PULSE_BPM[0]), min(float(tempo_range[1]), SLOW_PULSE_BPM[1])
            plan.tempo_bpm = round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), 2)
            plan.swing_ratio = 0.5 if rng.random() < 0.8 else float(rng.uniform(0.54, 0.6))
    elif feel == "half_time":
        if plan.beats_per_bar != 4:
            plan.meter = "4/4"
            plan.beats_per_bar, plan.steps_per_beat = TEMPO_METERS["4/4"]
        plan.drums = "half_time"
    elif feel == "dense":
        have = {pt.instrument for pt in plan.parts}
        opts = [o for o in DENSE_PARTS if o[0] not in have]
        k = min(len(opts), int(rng.integers(2, 4)))
        for j in rng.choice(len(opts), size=k, replace=False):
            inst, pat = opts[int(j)]
            plan.parts.append(Part("comp", inst, pat, _LEVELS["comp"] + float(rng.normal(0, 2.5)), inst))
        if not any(pt.role == "lead" for pt in plan.parts):
            inst = str(rng.choice(["synth-lead", "strings", "brass", "guitar"]))
            plan.parts.append(Part("lead", inst, "melody", _LEVELS["lead"] + float(rng.normal(0, 2.5)), inst))
        plan.noise_db = float(max(plan.noise_db, rng.uniform(-60.0, -40.0)))
    elif feel == "rubato":
        plan.drums = None
        acoustic = {"piano": ["arp", "block", "waltz"], "guitar": ["arp", "strum_q"], "strings": ["sustain", "arp"]}
        inst = str(rng.choice(list(acoustic)))
        plan.parts = [pt for pt in plan.parts if pt.role == "lead"]
        plan.parts.insert(0, Part("comp", inst, str(rng.choice(acoustic[inst])), _LEVELS["comp"], inst))
        if rng.random() < 0.6:
            bass = "upright" if rng.random() < 0.5 else "piano"
            plan.parts.append(Part("bass", bass, "root", _LEVELS["bass"] + float(rng.normal(0, 2.5)),
                                   "bass" if bass == "upright" else "piano"))
        plan.swing_ratio = 0.5 if plan.steps_per_beat != 4 else plan.swing_ratio
        plan.humanise_ms = float(max(plan.humanise_ms, rng.uniform(10.0, 25.0)))
        plan.extra["rubato"] = {"depth": float(rng.uniform(0.02, 0.05)), "period_beats": float(rng.uniform(6.0, 16.0)),
                                "phase": float(rng.uniform(0.0, 2 * np.pi))}
    plan.phase_s = float(rng.uniform(0, plan.beats_per_bar * 60.0 / plan.tempo_bpm))
    return plan
