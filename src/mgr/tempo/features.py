"""Tempo features: onset envelopes and their evidence on a log-BPM grid (NumPy only).

One STFT per clip (librosa's defaults: ``n_fft=2048``, hop 512, 128 Slaney mels) gives six onset
envelopes:

* row 0, librosa's own (mean positive dB difference over all bands), from which the DSP estimate
  :func:`mgr.dsp.kernels.tempo_from_envelope` is computed, so the DSP baseline costs nothing extra;
* rows 1-4, the *loudness* flux of four mel-band groups (kick / bass, low-mid, high-mid, hats):
  the rise of the band power raised to :data:`LOUDNESS_EXPONENT` (Stevens' power law, relative to
  the clip's loudest bin). A dB difference scores a soft onset almost like a loud one (an 8th-note
  hi-hat or a pumping piano's off-beats as much as the beat), so dB-only envelopes made the model
  pick the subdivision level; this compression keeps loud onsets louder (a -9 dB click counts
  about half) while still seeing quiet instruments;
* row 5, the rise of the linear amplitude (the accents of the whole mix).

For each envelope, :func:`evidence` samples on :data:`BPM_GRID` (30-295 BPM, 36 bins per octave):

* the autocorrelation at the beat period (peaks at the tempo and its *sub*-multiples), and
* the Fourier tempogram magnitude at the beat frequency (peaks at the tempo and its *multiples*),

which disagree exactly where octave errors happen; the model reads both. Scale augmentation
(:func:`stretch`) resamples the envelopes in time, the cheap equivalent of time-stretching the
audio with the label scaled by the same factor (Schreiber & Mueller 2018).

The synthetic tempo sets draw tempi log-uniformly over 50-220 BPM (so every tempo is learned), a
prior no music library has; :func:`prior_weights` moves the trained model's posteriors to a
realistic one (a log-normal in BPM, ``tempo.prior_median_bpm`` / ``tempo.prior_octaves``), which is
what decides between a tempo and its double when the evidence is ambiguous.
"""

from __future__ import annotations

import functools

import numpy as np

from mgr.dsp import kernels as fastdsp
from mgr.dsp import portable

BPM_MIN = 30.0
BINS_PER_OCTAVE = 36
N_BINS = 120
#: the model's classes / feature axis: 30 * 2 ** (k / 36), k = 0..119 (30 .. ~295 BPM)
BPM_GRID = BPM_MIN * portable.exp2(np.arange(N_BINS) / BINS_PER_OCTAVE)
#: mel band groups (of 128 Slaney bands at 22.05 kHz: ~0-300 Hz, 300-1100 Hz, 1.1-4 kHz, 4 kHz-)
BAND_EDGES = (0, 12, 40, 80, 128)
N_ENV = len(BAND_EDGES) + 1  # librosa's dB flux + 4 groups' loudness flux + the accent (linear-amplitude) flux
#: the band envelopes' compression: power ** 0.3 (loudness ~ intensity ** 0.3, Stevens' law)
LOUDNESS_EXPONENT = 0.3
#: beat-phase resolution of :func:`phase_evidence`: the envelope folded at each candidate period
#: is read at this many phases per beat
N_PHASES = 24
#: per envelope: acf + fourier (+ on-beat salience, half-beat contrast, acf at 3 and 4 beats), + the log-BPM position
N_CHANNELS = 6 * N_ENV + 1
HOP = 512
N_FFT = 2048
#: :func:`prior_weights`: the training-label prior is floored at this fraction of its maximum
PRIOR_FLOOR = 0.3


def envelopes(y: np.ndarray, sr: int) -> np.ndarray:
    """``(6, n_frames)`` float32 onset envelopes at ``sr / 512`` frames per second; row 0 is
    ``librosa.onset.onset_strength(y=y, sr=sr)`` (what the DSP tempo estimate reads), rows 1-4
    the loudness flux (power ** :data:`LOUDNESS_EXPONENT`) per mel-band group, row 5 the rise of
    the linear amplitude (dB envelopes make a soft click as strong as a loud one; these keep the
    accents)."""

    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.size < N_FFT:
        y = np.pad(y, (0, N_FFT - y.size))
    power = portable.abs2(fastdsp.stft(y))  # machine-independent (mgr.dsp.portable), as below
    mel = fastdsp.mel_power(power, sr)
    db = fastdsp.power_to_db(mel).astype(np.float32)
    d = np.maximum(0.0, db[:, 1:] - db[:, :-1])
    pad = 1 + N_FFT // (2 * HOP)
    top = max(float(mel.max()), 1e-20)
    loud = portable.power(mel / top, LOUDNESS_EXPONENT).astype(mel.dtype)
    dl = np.maximum(0.0, loud[:, 1:] - loud[:, :-1])
    amp = np.sqrt(mel.sum(axis=0))
    amp = amp / max(float(amp.max()), 1e-12)
    rows = ([d.mean(axis=0)] + [dl[a:b].mean(axis=0) for a, b in zip(BAND_EDGES[:-1], BAND_EDGES[1:])]
            + [np.maximum(0.0, np.diff(amp))])
    env = np.concatenate([np.zeros((len(rows), pad), np.float32), np.stack(rows).astype(np.float32)], axis=1)
    return env[:, : db.shape[1]]


def fps(sr: int) -> float:
    return sr / HOP


def dsp_tempo(env: np.ndarray, sr: int) -> float:
    """The DSP estimate (``librosa.feature.tempo`` defaults) from row 0 of :func:`envelopes`."""

    return float(fastdsp.tempo_from_envelope(np.asarray(env)[0], sr, HOP, none_if_flat=False))


def stretch(env: np.ndarray, scale: float) -> np.ndarray:
    """The envelopes of the same music played ``scale`` times faster (tempo x ``scale``)."""
    env = np.asarray(env, dtype=np.float32)
    n = env.shape[1]
    m = max(2, int(np.floor((n - 1) / scale)) + 1)
    t = np.minimum(np.arange(m) * scale, n - 1)
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (t - i0).astype(np.float32)
    return env[:, i0] * (1 - w) + env[:, i1] * w


def _normalise(x: np.ndarray, frame_rate: float) -> np.ndarray:
    """Remove the slow trend (1 s moving average) and scale to unit variance, per row."""
    k = max(1, min(int(round(frame_rate)), x.shape[1]))  # (np.convolve "same" is max-length)
    ker = np.ones(k) / k
    trend = np.stack([np.convolve(r, ker, mode="same") for r in x])
    x = x - trend
    sd = x.std(axis=1, keepdims=True)
    return np.where(sd > 1e-8, x / np.where(sd > 1e-8, sd, 1.0), 0.0)


@functools.lru_cache(maxsize=64)
def _fold_index(n: int, lags: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Where :func:`phase_evidence` reads an ``n``-frame envelope: for each candidate period and
    each of its :data:`N_PHASES` phases, the ``K`` positions ``(phase / N_PHASES + k) * lag``
    (``k < K``, the whole periods in the clip, at least 1) as the nearest frames (the envelopes
    are smoothed first), plus each (candidate, phase) segment's start and length. Cached: clips
    share their length."""
    lag = np.asarray(lags, dtype=np.float64)
    J = N_PHASES
    top = max(n - 2, 0)
    K = np.maximum(1, np.floor(top / lag - (J - 1) / J).astype(int) + 1)
    seg = np.repeat(K, J)  # one segment per (candidate, phase), candidate-major
    starts = np.concatenate([[0], np.cumsum(seg)[:-1]])
    s_of = np.repeat(np.arange(seg.size), seg)
    k = np.arange(s_of.size) - starts[s_of]
    pos = np.clip(((s_of % J) / J + k) * lag[s_of // J], 0.0, float(top))
    idx = np.minimum(np.rint(pos).astype(np.intp), max(n - 1, 0))
    for a in (idx, starts, seg):
        a.flags.writeable = False
    return idx, starts, seg


def phase_evidence(x: np.ndarray, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beat-phase evidence of normalised envelopes ``x`` ``(n_env, n)`` at candidate beat periods
    ``lags`` (frames): each envelope is folded at the period (its mean over the ``K`` whole periods
    in the clip, read at :data:`N_PHASES` phases at the nearest frame, after a 5-frame triangular
    smoothing), giving

    * ``on``: the profile's maximum, how much of the envelope falls on one phase of the candidate
      beat (a comb filter at the best phase), and
    * ``contrast``: that maximum minus the profile half a period later. A beat candidate at half
      the true tempo has the true beat's other half (e.g. the backbeat snare between two kicks)
      at its half period, so a small contrast; the true beat has only its off-beats there.

    Both ``(n_env, len(lags))``, scaled by each envelope's largest ``on`` over the candidates.
    Magnitudes (autocorrelation, tempogram) see how *often* onsets recur; the fold sees *where*
    in the candidate beat they fall, which is what tells a beat from its half.
    """
    x = np.asarray(x, dtype=np.float64)
    e, n = x.shape
    ker = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    if n >= ker.size:
        x = np.stack([np.convolve(r, ker, mode="same") for r in x])
    idx, starts, seg = _fold_index(n, tuple(np.asarray(lags, dtype=np.float64).round(9)))
    v = x.astype(np.float32)[:, idx]
    J = N_PHASES
    R = (np.add.reduceat(v, starts, axis=1) / seg).reshape(e, len(seg) // J, J)
    j = R.argmax(axis=2)
    on = R.max(axis=2)
    half = np.take_along_axis(R, ((j + J // 2) % J)[..., None], axis=2)[..., 0]
    con = on - half
    scale = on.max(axis=1, keepdims=True)
    scale = np.where(scale > 1e-8, scale, 1.0)
    return (on / scale).astype(np.float64), (con / scale).astype(np.float64)


def evidence(env: np.ndarray, frame_rate: float) -> np.ndarray:
    """``(N_BINS, N_CHANNELS)`` float32: per envelope, the normalised autocorrelation at the beat
    period and the (max-normalised) Fourier tempogram at the beat frequency of each grid tempo;
    the beat-phase evidence (:func:`phase_evidence`: on-beat salience, half-beat contrast); the
    autocorrelation at three and four beats (a bar of 3/4 or 4/4: bar structure, also for
    candidates whose bar is slower than the grid); then the grid position in [-1, 1] (lets the
    model learn a tempo prior). Channels in that order, each group one row per envelope."""
    x = _normalise(np.asarray(env, dtype=np.float64), frame_rate)
    n = x.shape[1]
    nfft = 1 << int(np.ceil(portable.log2(2 * n + 1)))
    spec = np.fft.rfft(x, nfft, axis=1)
    ac = np.fft.irfft(portable.abs2(spec), nfft, axis=1)[:, :n]
    ac = ac / np.maximum(n - np.arange(n), 1)  # unbiased
    ac = ac / np.where(ac[:, :1] > 1e-12, ac[:, :1], 1.0)
    lags = 60.0 * frame_rate / BPM_GRID
    acf = np.stack([np.interp(lags, np.arange(n), r, right=0.0) for r in ac])
    w = 0.5 - 0.5 * portable.cos(2.0 * np.pi * np.arange(1, n + 1) / (n + 1))  # np.hanning(n + 2)[1:-1]
    # Fourier tempogram at the grid frequencies: a zero-padded FFT (<= 0.2 BPM apart), interpolated
    nf = max(1 << int(np.ceil(portable.log2(n))), 1 << int(np.ceil(portable.log2(60.0 * frame_rate / 0.2))))
    mag = np.sqrt(portable.abs2(np.fft.rfft(x * w, nf, axis=1)))
    fbin = BPM_GRID / 60.0 / frame_rate * nf
    ft = np.stack([np.interp(fbin, np.arange(mag.shape[1]), r) for r in mag])
    ft = ft / np.where(ft.max(axis=1, keepdims=True) > 1e-12, ft.max(axis=1, keepdims=True), 1.0)
    on, con = phase_evidence(x, lags)
    bar3 = np.stack([np.interp(3.0 * lags, np.arange(n), r, right=0.0) for r in ac])
    bar4 = np.stack([np.interp(4.0 * lags, np.arange(n), r, right=0.0) for r in ac])
    pos = np.linspace(-1.0, 1.0, N_BINS)[None]
    return np.concatenate([acf, ft, on, con, bar3, bar4, pos]).T.astype(np.float32)


def bpm_of(k: float) -> float:
    return float(BPM_MIN * portable.exp2(k / BINS_PER_OCTAVE))


def bin_of(bpm: np.ndarray | float) -> np.ndarray:
    return portable.log2(np.asarray(bpm, dtype=np.float64) / BPM_MIN) * BINS_PER_OCTAVE


def readout(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tempo-class probabilities ``(n, N_BINS)`` -> (BPM, confidence): the argmax bin refined by a
    parabola through the log-probabilities of its neighbours; confidence = the probability within
    +-4 % (+-2 bins) of it."""
    p = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    k = p.argmax(axis=1)
    lp = portable.log(np.maximum(p, 1e-12))
    rows = np.arange(p.shape[0])
    km, kp = np.clip(k - 1, 0, N_BINS - 1), np.clip(k + 1, 0, N_BINS - 1)
    a, b, c = lp[rows, km], lp[rows, k], lp[rows, kp]
    den = a - 2 * b + c
    off = np.where((k > 0) & (k < N_BINS - 1) & (den < -1e-12), 0.5 * (a - c) / np.where(den < -1e-12, den, -1.0), 0.0)
    off = np.clip(off, -0.5, 0.5)
    bpm = BPM_MIN * portable.exp2((k + off) / BINS_PER_OCTAVE)
    cs = np.concatenate([np.zeros((p.shape[0], 1)), np.cumsum(p, axis=1)], axis=1)
    lo, hi = np.clip(k - 2, 0, N_BINS), np.clip(k + 3, 0, N_BINS)
    conf = cs[rows, hi] - cs[rows, lo]
    return bpm, conf


def label_prior(bpm: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """The distribution of training labels ``bpm`` on the grid (Gaussian-smoothed, ``sigma`` in
    bins), summing to 1: the tempo prior a classifier trained on them has learned."""
    kb = bin_of(np.clip(np.asarray(bpm, dtype=np.float64), BPM_GRID[0], BPM_GRID[-1]))
    h = np.zeros(N_BINS)
    for s in range(0, len(kb), 4096):  # (bounded memory for large sets)
        h += portable.exp(-0.5 * ((np.arange(N_BINS)[None, :] - kb[s : s + 4096, None]) / sigma) ** 2).sum(axis=0)
    return h / max(float(h.sum()), 1e-300)


def prior_weights(train_bpm: np.ndarray, median_bpm: float, octaves: float, floor: float = PRIOR_FLOOR) -> np.ndarray:
    """Per-bin weights that move a classifier's posteriors from the tempo prior of its training
    labels to a log-normal prior (``median_bpm``, ``octaves`` standard deviation in octaves): the
    label-shift correction of Saerens, Latinne & Decaestecker (2002), ``p(k|x) * target(k) / train(k)``
    renormalised. The training prior is floored at ``floor`` x its maximum, so the sparsely covered
    grid ends are not amplified. Returned scaled to a maximum of 1."""
    if not (np.isfinite(median_bpm) and median_bpm > 0 and np.isfinite(octaves) and octaves > 0):
        raise ValueError(f"tempo prior needs a positive median and width (got {median_bpm}, {octaves})")
    train = label_prior(train_bpm)
    train = np.maximum(train, floor * float(train.max()))
    target = portable.exp(-0.5 * (portable.log2(BPM_GRID / float(median_bpm)) / float(octaves)) ** 2)
    w = target / train
    return w / float(w.max())


def apply_prior(probs: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """``probs`` ``(n, N_BINS)`` reweighted by :func:`prior_weights` and renormalised per row
    (unchanged when ``weights`` is ``None``)."""
    p = np.asarray(probs, dtype=np.float64)
    if weights is None:
        return p
    q = p * np.asarray(weights, dtype=np.float64)[None, :]
    return q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)


def soft_targets(bpm: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian targets on the grid around each reference (``sigma`` in bins), summing to 1."""
    kb = bin_of(np.clip(np.asarray(bpm, dtype=np.float64), BPM_GRID[0], BPM_GRID[-1]))
    d = np.arange(N_BINS)[None, :] - kb[:, None]
    t = portable.exp(-0.5 * (d / sigma) ** 2)
    return (t / t.sum(axis=1, keepdims=True)).astype(np.float32)
