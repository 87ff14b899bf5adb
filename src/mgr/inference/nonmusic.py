"""Labelled synthetic *non-music* for calibrating and testing the no-music gate
(:mod:`mgr.inference.gate`): noise of three colours, mains hum with harmonics, steady tones, held
chords, sine sweeps, speech-like babble and crowd applause, at any length and level.

Every generator is ``f(n, sr, rng) -> float64 signal`` with peak about 1; :func:`clip` draws one of a
kind and scales it to an RMS level in dBFS. Nothing here is tuned to what the gate measures: the
kinds are textbook signals (Scheirer & Slaney 1997 list speech, noise and "ambient" sound as the
non-music a discriminator meets), their parameters drawn over wide ranges.

Speech-like: a glottal pulse train (its pitch 85-255 Hz, drifting with an intonation contour)
through three formant resonators whose targets jump per syllable (vowel formant ranges of
Peterson & Barney 1952), syllables at an irregular 3-6 per second with fricative noise bursts
and pauses between words -- the rhythm of speech, which is not isochronous.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

KINDS = ("white", "pink", "brown", "hum", "tone", "chord", "sweep", "speech", "applause")


def _norm(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.mean()
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x / peak if peak > 0 else x


def white(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    return _norm(rng.standard_normal(n))


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return _norm(np.fft.irfft(spec / f ** (exponent / 2.0), n))


def pink(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power spectrum."""
    return _coloured(n, rng, 1.0)


def brown(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """1/f^2 power spectrum (a random walk)."""
    return _coloured(n, rng, 2.0)


def hum(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and random-weighted harmonics up to ~1 kHz, a little noise."""
    f0 = float(rng.choice([50.0, 60.0])) * (1 + rng.normal(0, 0.002))
    t = np.arange(n) / sr
    x = np.zeros(n)
    for h in range(1, 20):
        if h * f0 > 0.45 * sr:
            break
        x += rng.uniform(0, 1) / h ** rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3))
    return _norm(x + 10 ** (rng.uniform(-50, -25) / 20) * rng.standard_normal(n))


def tone(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A steady tone (sine, or a harmonic timbre) at 60-4000 Hz, sometimes with slow tremolo."""
    f0 = float(np.exp(rng.uniform(np.log(60), np.log(4000))))
    t = np.arange(n) / sr
    n_h = int(rng.integers(1, 8))
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, n_h + 1) if f0 * h < 0.45 * sr)
    if rng.random() < 0.3:
        x = x * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
    return _norm(x)


def chord(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One chord held for the whole clip (3-4 harmonic notes, no onset after the first): a drone.
    Treated as *no music* by the gate (no rhythm, no change: nothing a genre or tempo describes)."""
    root = rng.uniform(40, 64)
    shape = [[0, 4, 7], [0, 3, 7], [0, 4, 7, 11], [0, 3, 7, 10], [0, 5, 7]][int(rng.integers(0, 5))]
    t = np.arange(n) / sr
    x = np.zeros(n)
    for s in shape:
        f = 440.0 * 2 ** ((root + s - 69) / 12)
        for h in range(1, 6):
            if f * h < 0.45 * sr:
                x += np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6.3)) / h ** 1.3
    attack = np.minimum(1.0, t / 0.05)
    return _norm(x * attack)


def sweep(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """An exponential (or linear) sine sweep between two frequencies in 30-8000 Hz, up or down,
    once or repeated."""
    lo, hi = np.exp(rng.uniform(np.log(30), np.log(300))), np.exp(rng.uniform(np.log(1000), np.log(min(8000, 0.45 * sr))))
    reps = int(rng.choice([1, 1, 2, 4]))
    m = max(1, n // reps, 2 * sr)  # a measurement sweep: 2 s or longer
    u = (np.arange(n) % m) / m
    if rng.random() < 0.5:
        u = 1 - u
    f = lo * (hi / lo) ** u if rng.random() < 0.7 else lo + (hi - lo) * u
    return _norm(np.sin(2 * np.pi * np.cumsum(f) / sr))


def _resonator(x: np.ndarray, f: np.ndarray, bw: float, sr: int, block: int) -> np.ndarray:
    """Two-pole resonance at a piecewise-constant frequency ``f`` (one value per ``block``)."""
    out = np.zeros_like(x)
    zi = np.zeros(2)
    r = np.exp(-np.pi * bw / sr)
    for i in range(0, len(x), block):
        fc = f[i // block]
        a = [1.0, -2 * r * np.cos(2 * np.pi * fc / sr), r * r]
        out[i : i + block], zi = lfilter([1 - r], a, x[i : i + block], zi=zi)
    return out


def speech(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like babble (module docstring): voiced syllables with jumping formants, fricative
    bursts, irregular syllable timing and pauses."""
    t_end = n / sr
    env = np.zeros(n)
    fric = np.zeros(n)
    block = max(1, int(0.01 * sr))
    nb = n // block + 1
    F1 = np.full(nb, 500.0)
    F2 = np.full(nb, 1500.0)
    F3 = np.full(nb, 2500.0)
    t = rng.uniform(0, 0.3)
    while t < t_end:
        dur = rng.uniform(0.12, 0.32)
        a, b = int(t * sr), min(n, int((t + dur) * sr))
        if b > a:
            k = np.arange(b - a) / max(1, b - a)
            env[a:b] = np.sin(np.pi * k) ** 0.7 * rng.uniform(0.4, 1.0)
            F1[a // block : b // block + 1] = rng.uniform(270, 850)
            F2[a // block : b // block + 1] = rng.uniform(850, 2300)
            F3[a // block : b // block + 1] = rng.uniform(2300, 3000)
            if rng.random() < 0.4:  # a consonant: a short noise burst before the vowel
                c = min(n, a + int(rng.uniform(0.03, 0.09) * sr))
                fric[a:c] = rng.uniform(0.2, 0.6)
        t += dur + (rng.uniform(0.25, 0.7) if rng.random() < 0.2 else rng.uniform(0.0, 0.08))
    f0 = rng.uniform(85, 255) * 2 ** (0.25 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * np.arange(n) / sr
                                               + rng.uniform(0, 6.3)) + 0.05 * rng.standard_normal())
    phase = np.cumsum(f0 / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    src = lfilter([1.0], [1.0, -0.95], pulses)  # glottal roll-off
    voiced = sum(g * _resonator(src, F, bw, sr, block) for g, F, bw in ((1.0, F1, 90), (0.6, F2, 110), (0.3, F3, 170)))
    voiced = voiced / (np.max(np.abs(voiced)) + 1e-12)
    noise = lfilter([1.0, -0.9], [1.0], rng.standard_normal(n))
    noise = noise / (np.max(np.abs(noise)) + 1e-12)
    return _norm(voiced * env + 0.5 * noise * fric)


def applause(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Crowd applause: many clappers (decaying band-passed noise bursts at random times, a few
    hundred to a few thousand per second in all) over diffuse crowd noise."""
    rate = float(np.exp(rng.uniform(np.log(150), np.log(3000))))
    k = rng.poisson(rate * n / sr)
    from scipy.signal import fftconvolve

    impulses = np.zeros(n)
    np.add.at(impulses, rng.integers(0, n, size=k), rng.uniform(0.3, 1.0, size=k))
    shape = np.exp(-np.arange(int(0.012 * sr)) / sr / 0.003)
    x = fftconvolve(impulses, shape)[:n] * rng.standard_normal(n)  # each clap: a decaying noise burst
    x = lfilter([1.0, -0.6], [1.0], x)
    crowd = _coloured(n, rng, 1.0) * rng.uniform(0.05, 0.4)
    if rng.random() < 0.5:  # the applause swells and fades
        x *= np.interp(np.arange(n), [0, n * rng.uniform(0.1, 0.4), n * rng.uniform(0.6, 0.9), n], [0.2, 1, 1, 0.3])
    return _norm(x / (np.max(np.abs(x)) + 1e-12) + crowd)


GENERATORS = {"white": white, "pink": pink, "brown": brown, "hum": hum, "tone": tone, "chord": chord,
              "sweep": sweep, "speech": speech, "applause": applause}


def clip(kind: str, seconds: float, sr: int, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """A ``kind`` clip of ``seconds`` at RMS ``level_dbfs`` (float32, peaks clipped at +-1)."""
    x = GENERATORS[kind](int(round(seconds * sr)), sr, rng)
    rms = float(np.sqrt(np.mean(np.square(x)))) or 1.0
    return np.clip(x * (10 ** (level_dbfs / 20.0) / rms), -1.0, 1.0).astype(np.float32)


def music(seconds: float, sr: int, level_dbfs: float, rng: np.random.Generator, genre: str | None = None) -> np.ndarray:
    """A synthetic music clip (:mod:`mgr.synth`, a random genre's song plan) at RMS ``level_dbfs``."""
    from mgr.synth.render import render
    from mgr.synth.styles import GENRES, sample_plan

    genre = genre or str(rng.choice(GENRES))
    y = render(sample_plan(genre, rng), sr, seconds, rng).audio
    rms = float(np.sqrt(np.mean(np.square(y)))) or 1.0
    return np.clip(y * (10 ** (level_dbfs / 20.0) / rms), -1.0, 1.0).astype(np.float32)
