"""Instruments and effects by synthesis, vectorised with numpy (and scipy.signal for filters).

Every instrument is a pure function of its arguments and a ``numpy.random.Generator`` so that a
clip is reproducible from its seed. Notes are rendered as short arrays and added into a part
buffer at their onset (:func:`add_at`); effects act on whole parts or on the mix.

Instruments: Karplus-Strong plucks (:func:`karplus_strong`, block-vectorised: one numpy step per
period instead of one Python step per sample, see :func:`karplus_strong_naive`), FM electric piano
and bells, an additive piano, band-limited wavetable oscillators (saw, square, organ drawbars) for
strings, brass, pads and leads, and noise/sine drums.
"""

from __future__ import annotations

import functools

import numpy as np

TABLE_SIZE = 4096
TWO_PI = 2.0 * np.pi


def midi_to_hz(m: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def add_at(buf: np.ndarray, x: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add ``gain * x`` into ``buf`` starting at sample ``start`` (clipped to the buffer)."""
    n = buf.shape[0]
    if start >= n or start + x.shape[0] <= 0:
        return
    a = max(start, 0)
    b = min(start + x.shape[0], n)
    buf[a:b] += gain * x[a - start : b - start]


def adsr(n: int, sr: int, attack: float, release: float, *, decay_s: float | None = None) -> np.ndarray:
    """Linear attack, optional exponential decay, linear release over the last ``release`` s."""
    env = np.ones(n)
    na = min(n, max(1, int(attack * sr)))
    env[:na] = np.linspace(0.0, 1.0, na, endpoint=False)
    if decay_s:
        env *= np.exp(-np.arange(n) / (decay_s * sr))
    nr = min(n, max(1, int(release * sr)))
    env[n - nr :] *= np.linspace(1.0, 0.0, nr)
    return env


# ------------------------------------------------------------------------------ filters
@functools.lru_cache(maxsize=256)
def _butter(order: int, fc: tuple[float, ...] | float, btype: str, sr: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import butter

    nyq = sr / 2.0
    if isinstance(fc, tuple):
        wn = [min(max(f / nyq, 1e-4), 0.999) for f in fc]
    else:
        wn = min(max(fc / nyq, 1e-4), 0.999)
    return butter(order, wn, btype=btype)


def lowpass(x: np.ndarray, fc: float, sr: int, order: int = 2) -> np.ndarray:
    from scipy.signal import lfilter

    b, a = _butter(order, round(float(fc), 1), "lowpass", sr)
    return lfilter(b, a, x)


def highpass(x: np.ndarray, fc: float, sr: int, order: int = 2) -> np.ndarray:
    from scipy.signal import lfilter

    b, a = _butter(order, round(float(fc), 1), "highpass", sr)
    return lfilter(b, a, x)


def bandpass(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    from scipy.signal import lfilter

    b, a = _butter(order, (round(float(lo), 1), round(float(hi), 1)), "bandpass", sr)
    return lfilter(b, a, x)


# ------------------------------------------------------------------------- Karplus-Strong
def _ks_excitation(period: int, rng: np.random.Generator, brightness: float) -> np.ndarray:
    from scipy.signal import lfilter

    exc = rng.uniform(-1.0, 1.0, period)
    b = float(np.clip(brightness, 0.02, 1.0))
    exc = lfilter([b], [1.0, -(1.0 - b)], exc)  # one-pole low-pass: a softer pick
    exc -= exc.mean()
    peak = np.abs(exc).max()
    return exc / peak if peak > 0 else exc


def ks_gain(period: int, sr: int, decay_s: float) -> float:
    """Per-period loop gain so that the string decays by 60 dB in ``decay_s`` seconds."""
    return float(10.0 ** (-3.0 * period / (sr * decay_s)))


def karplus_strong(
    freq: float, n: int, sr: int, rng: np.random.Generator, *, brightness: float = 0.6, decay_s: float = 1.5
) -> np.ndarray:
    """Plucked string: y[t] = g/2 (y[t-N] + y[t-N-1]), the first N samples a noise burst.

    Vectorised over one period at a time: block k is computed from block k-1 in one numpy
    expression, so the Python loop runs n/N times instead of n times.
    """
    period = max(2, int(round(sr / freq)))
    g = ks_gain(period, sr, decay_s)
    exc = _ks_excitation(period, rng, brightness)
    return _ks_blocks(exc, n, g)


def _ks_blocks(exc: np.ndarray, n: int, g: float) -> np.ndarray:
    """Run the Karplus-Strong recurrence for ``n`` samples from the excitation ``exc``.

    Samples of one period depend only on the period before, so each period is one numpy step.
    (Unrolling several periods into one binomial-weighted matrix product, or the closed-form
    impulse response with an FFT convolution, were both measured slower at these lengths.)
    """
    period = exc.shape[0]
    n_blocks = -(-n // period)
    out = np.empty(n_blocks * period + 1)
    out[0] = 0.0  # y[-1] = 0: the sample before the excitation
    y = out[1:]
    y[:period] = exc
    half = 0.5 * g
    for k in range(1, n_blocks):
        prev = out[(k - 1) * period : k * period + 1]  # y[(k-1)N - 1 .. kN - 1]
        np.add(prev[1:], prev[:-1], out=y[k * period : (k + 1) * period])
        y[k * period : (k + 1) * period] *= half
    return y[:n].copy()


def karplus_strong_naive(exc: np.ndarray, n: int, g: float) -> np.ndarray:
    """Reference per-sample implementation of :func:`_ks_blocks` (benchmarks and tests only)."""
    period = len(exc)
    y = [0.0] * n
    for t in range(n):
        if t < period:
            y[t] = float(exc[t])
        else:
            y[t] = 0.5 * g * (y[t - period] + (y[t - period - 1] if t - period - 1 >= 0 else 0.0))
    return np.asarray(y)


# ----------------------------------------------------------------------------- FM
def fm_epiano(freq: float, n: int, sr: int, rng: np.random.Generator, *, decay_s: float = 1.2) -> np.ndarray:
    """Two-operator FM electric piano (ratio 1 body + a short high 'tine')."""
    t = np.arange(n) / sr
    index = (1.2 + 0.8 * rng.random()) * np.exp(-t / 0.35)
    body = np.sin(TWO_PI * freq * t + index * np.sin(TWO_PI * freq * t))
    tine = np.sin(TWO_PI * freq * 14.0 * t) * np.exp(-t / 0.02)
    env = np.exp(-t / decay_s)
    env[: min(n, 40)] *= np.linspace(0, 1, min(n, 40))
    return (body + 0.25 * tine) * env


def fm_bell(freq: float, n: int, sr: int, rng: np.random.Generator, *, decay_s: float = 2.0) -> np.ndarray:
    """Inharmonic FM bell / vibraphone (modulator ratio ~3.5, decaying index)."""
    t = np.arange(n) / sr
    ratio = 3.5 + 0.2 * rng.standard_normal()
    index = (2.0 + rng.random()) * np.exp(-t / (0.6 * decay_s))
    y = np.sin(TWO_PI * freq * t + index * np.sin(TWO_PI * freq * ratio * t))
    env = np.exp(-t / (0.4 * decay_s))
    env[: min(n, 20)] *= np.linspace(0, 1, min(n, 20))
    return y * env


def additive_piano(freq: float, n: int, sr: int, rng: np.random.Generator, *, decay_s: float = 2.0) -> np.ndarray:
    """A few inharmonic partials, higher ones decaying faster, plus a hammer thump."""
    t = np.arange(n) / sr
    b = 4e-4
    y = np.zeros(n)
    base = np.exp(-t / decay_s)
    env = np.ones(n)
    for k in range(1, 7):
        fk = freq * k * np.sqrt(1 + b * k * k)
        env *= base  # exp(-t k / decay_s)
        if fk > sr * 0.45:
            break
        y += (0.7**k) * np.sin(TWO_PI * fk * t + rng.random() * TWO_PI) * env
    ham = min(n, int(0.01 * sr))
    y[:ham] += 0.3 * rng.standard_normal(ham) * np.linspace(1, 0, ham)
    y[: min(n, 15)] *= np.linspace(0, 1, min(n, 15))
    return y


# ---------------------------------------------------------------- wavetable oscillators
@functools.lru_cache(maxsize=512)
def wavetable(kind: str, n_harm: int) -> np.ndarray:
    """One cycle of a band-limited waveform with ``n_harm`` harmonics (peak-normalised)."""
    ph = np.arange(TABLE_SIZE) / TABLE_SIZE
    k = np.arange(1, max(1, n_harm) + 1)[:, None]
    if kind == "saw":
        amps = 1.0 / k
    elif kind == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif kind == "organ":  # drawbars 8' 4' 2 2/3' 2' (harmonics 1 2 3 4) + a little 8th
        amps = np.select([k == 1, k == 2, k == 3, k == 4, k == 8], [1.0, 0.8, 0.6, 0.5, 0.3], 0.0)
    elif kind == "reed":  # brass-ish: strong low harmonics falling off
        amps = 1.0 / k**1.3
    else:  # pragma: no cover - programming error
        raise ValueError(kind)
    table = (amps * np.sin(TWO_PI * k * ph[None, :])).sum(axis=0)
    return table / np.abs(table).max()


def osc(kind: str, freq: float | np.ndarray, n: int, sr: int, *, phase0: float = 0.0, max_harm: int = 64) -> np.ndarray:
    """Band-limited oscillator; ``freq`` may be an array (vibrato, glide)."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    fmax = float(f.max()) if n else 1.0
    n_harm = int(max(1, min(max_harm, (sr * 0.45) // max(fmax, 1.0))))
    table = wavetable(kind, n_harm)
    if np.ndim(freq) == 0:
        phase = phase0 + np.arange(n) * (float(freq) / sr)
    else:
        phase = phase0 + np.cumsum(f) / sr
    idx = ((phase % 1.0) * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)
    return table[idx]


def vibrato(freq: float, n: int, sr: int, rate: float, depth_cents: float, delay_s: float = 0.0) -> np.ndarray:
    t = np.arange(n) / sr
    ramp = np.clip((t - delay_s) / 0.3, 0.0, 1.0) if delay_s > 0 else 1.0
    return freq * np.exp((depth_cents * np.log(2.0) / 1200.0) * ramp * np.sin(TWO_PI * rate * t))


def strings_note(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Ensemble strings: three detuned saws with vibrato, slow attack."""
    y = np.zeros(n)
    f = vibrato(freq, n, sr, 5.0 + rng.random(), 12.0, 0.15)
    for det in (-7.0, 0.0, 6.0):
        y += osc("saw", f * 2 ** (det / 1200), n, sr, phase0=rng.random(), max_harm=24)
    return y / 3.0 * adsr(n, sr, 0.12 + 0.1 * rng.random(), 0.15)


def organ_note(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    y = osc("organ", freq, n, sr, phase0=rng.random())
    y *= 1.0 + 0.15 * np.sin(TWO_PI * 6.5 * t)  # rotary-speaker tremolo
    return y * adsr(n, sr, 0.008, 0.03)


def brass_note(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Brightness follows the envelope: cross-fade a dark and a bright band-limited reed."""
    env = adsr(n, sr, 0.04 + 0.03 * rng.random(), 0.06)
    f = vibrato(freq, n, sr, 5.5, 8.0, 0.25)
    ph = rng.random()
    bright = osc("reed", f, n, sr, phase0=ph, max_harm=30)
    dark = osc("reed", f, n, sr, phase0=ph, max_harm=4)
    return (env * bright + (1.0 - env) * dark) * env


def pad_note(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    y = osc("saw", freq * 2 ** (-9 / 1200), n, sr, phase0=rng.random(), max_harm=12)
    y += osc("saw", freq * 2 ** (9 / 1200), n, sr, phase0=rng.random(), max_harm=12)
    return 0.5 * y * adsr(n, sr, 0.3 + 0.3 * rng.random(), 0.3)


def lead_note(freq: float, n: int, sr: int, rng: np.random.Generator, *, kind: str = "square") -> np.ndarray:
    f = vibrato(freq, n, sr, 5.5 + rng.random(), 15.0, 0.12)
    return osc(kind, f, n, sr, phase0=rng.random(), max_harm=20) * adsr(n, sr, 0.01, 0.04)


def synth_bass_note(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    env = adsr(n, sr, 0.005, 0.03, decay_s=0.6)
    return 0.6 * osc("saw", freq, n, sr, max_harm=10) * env + 0.6 * np.sin(TWO_PI * freq * np.arange(n) / sr) * env


def sub_bass_note(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """808-style: a sine with a short pitch drop, long decay, soft saturation."""
    t = np.arange(n) / sr
    f = freq * (1.0 + 0.6 * np.exp(-t / 0.03))
    y = np.sin(TWO_PI * np.cumsum(f) / sr) * adsr(n, sr, 0.003, 0.05, decay_s=0.9)
    return np.tanh(1.8 * y)


# ------------------------------------------------------------------------------- drums
def kick(sr: int, rng: np.random.Generator, *, f0: float = 55.0, decay: float = 0.25, punch: float = 1.0) -> np.ndarray:
    n = int(sr * decay * 3)
    t = np.arange(n) / sr
    f = f0 + 120.0 * punch * np.exp(-t / 0.02)
    y = np.sin(TWO_PI * np.cumsum(f) / sr) * np.exp(-t / decay)
    nc = min(n, int(0.003 * sr))
    y[:nc] += 0.4 * rng.standard_normal(nc)
    return y


def snare(sr: int, rng: np.random.Generator, *, tone: float = 190.0, decay: float = 0.12, snappy: float = 0.7) -> np.ndarray:
    n = int(sr * decay * 4)
    t = np.arange(n) / sr
    noise = bandpass(rng.standard_normal(n), 1200.0, 7000.0, sr) * np.exp(-t / decay)
    body = np.sin(TWO_PI * tone * t) * np.exp(-t / 0.05)
    return snappy * noise * 2.0 + (1.0 - snappy) * body


def hat(sr: int, rng: np.random.Generator, *, decay: float = 0.04) -> np.ndarray:
    n = int(sr * decay * 5)
    t = np.arange(n) / sr
    metal = sum(np.sign(np.sin(TWO_PI * f * t)) for f in (317.0, 475.0, 581.0, 829.0))
    y = highpass(rng.standard_normal(n) + 0.3 * metal, 6500.0, sr)
    return y * np.exp(-t / decay)


def ride(sr: int, rng: np.random.Generator, *, decay: float = 0.9) -> np.ndarray:
    n = int(sr * decay * 2.5)
    t = np.arange(n) / sr
    bell = sum(np.sin(TWO_PI * f * t) for f in (523.0, 1117.0, 1789.0, 2457.0, 3303.0))
    y = highpass(0.6 * rng.standard_normal(n) + 0.25 * bell, 3000.0, sr)
    return y * np.exp(-t / decay) * (1 + 2 * np.exp(-t / 0.01))


def crash(sr: int, rng: np.random.Generator, *, decay: float = 1.2) -> np.ndarray:
    n = int(sr * decay * 2)
    t = np.arange(n) / sr
    return highpass(rng.standard_normal(n), 4000.0, sr) * np.exp(-t / decay)


def clap(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    env = np.exp(-t / 0.06)
    for d in (0.0, 0.011, 0.023):
        env += 0.8 * np.exp(-np.clip(t - d, 0, None) / 0.004) * (t >= d)
    return bandpass(rng.standard_normal(n), 900.0, 5000.0, sr) * env


def rim(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.06 * sr)
    t = np.arange(n) / sr
    return (np.sin(TWO_PI * 820.0 * t) + 0.4 * rng.standard_normal(n)) * np.exp(-t / 0.012)


def brush(sr: int, rng: np.random.Generator, *, length: float = 0.35) -> np.ndarray:
    n = int(length * sr)
    env = np.sin(np.linspace(0, np.pi, n)) ** 2
    return bandpass(rng.standard_normal(n), 2000.0, 8000.0, sr) * env


def click(sr: int, *, accent: bool = False) -> np.ndarray:
    """Metronome click: a 15 ms sine burst (higher on the downbeat)."""
    n = int(0.015 * sr)
    t = np.arange(n) / sr
    return np.sin(TWO_PI * (1760.0 if accent else 1320.0) * t) * np.exp(-t / 0.004)


# ------------------------------------------------------------------------------ effects
def distortion(x: np.ndarray, sr: int, drive: float) -> np.ndarray:
    """Overdrive: pre-emphasis, tanh clipping and a 'cabinet' low-pass."""
    y = np.tanh(drive * highpass(x, 90.0, sr) / (np.abs(x).max() + 1e-9))
    return lowpass(y, 4200.0, sr, order=2)


def reverb(x: np.ndarray, sr: int, rng: np.random.Generator, *, rt60: float, wet: float) -> np.ndarray:
    """Convolution with exponentially decaying, low-passed noise (a crude room)."""
    from scipy.signal import fftconvolve

    if wet <= 0:
        return x
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = lowpass(rng.standard_normal(n), 5000.0, sr) * 10 ** (-3 * t / rt60)
    ir[: int(0.01 * sr)] = 0.0  # pre-delay
    ir /= np.sqrt((ir**2).sum()) + 1e-12
    tail = fftconvolve(x, ir)[: x.shape[0]]
    return (1.0 - wet) * x + wet * tail
