"""NumPy re-implementations of the librosa (0.11) pieces the ``gtzan57`` features need.

Why: ``mgr predict`` with a classical model used to spend ~3 s importing librosa, JIT-compiling
its numba kernels and running ``scipy.ndimage.median_filter`` for HPSS. Everything here is plain
NumPy (no librosa, no numba, no scipy), and :func:`gtzan57` is the *one* implementation used by
both the features stage and ``mgr predict`` (through :func:`mgr.features.tables.extract_features`), so
training and prediction features are identical by construction. Each function names the librosa
call it reproduces; the tests compare them with librosa on real-format clips.

Defaults everywhere are librosa's: ``n_fft=2048``, ``hop=512``, periodic Hann window, centred
frames with zero padding, 128 Slaney mel bands, ``power_to_db(ref=1.0, amin=1e-10, top_db=80)``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mgr.dsp import portable

__all__ = [
    "chroma_filterbank",
    "chroma_stft",
    "chroma_with_tuning",
    "dct_ortho_matrix",
    "estimate_tuning",
    "gtzan57",
    "gtzan57_frames",
    "gtzan57_reduce",
    "hpss_signals",
    "istft",
    "median_filter_1d",
    "mfcc_from_power",
    "onset_strength_from_db",
    "power_to_db",
    "rms",
    "spectral_bandwidth",
    "spectral_centroid",
    "spectral_rolloff",
    "stft",
    "tempo",
    "tempo_from_envelope",
    "tuning_candidates",
    "tuning_from_candidates",
    "zero_crossing_rate",
]

N_FFT = 2048
HOP = 512
_TINY32 = np.finfo(np.float32).tiny


@functools.lru_cache(maxsize=8)
def _hann64(n_fft: int) -> np.ndarray:
    n = np.arange(n_fft, dtype=np.float64)
    return portable.hann(n_fft)  # periodic (scipy get_window 'hann', fftbins)


def _frame(y: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``(n_frames, length)`` read-only strided view (``librosa.util.frame`` transposed)."""
    n = 1 + (y.shape[0] - length) // hop
    return np.lib.stride_tricks.as_strided(y, shape=(n, length), strides=(y.strides[0] * hop, y.strides[0]),
                                           writeable=False)


def cabs(D: np.ndarray) -> np.ndarray:
    """``np.abs`` of a complex64 array, machine-independent: ``sqrt(re**2 + im**2)`` in float64
    (NumPy's complex ``abs`` dispatches by SIMD level), as float32."""
    return np.sqrt(portable.abs2(D, np.float64)).astype(np.float32)


def stft(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, block: int = 512) -> np.ndarray:
    """``librosa.stft(y, n_fft, hop_length=hop)`` (centred, zero padding) as complex64
    ``(1 + n_fft // 2, n_frames)``. Like librosa the transform is computed in float64 (the
    window is float64) and stored as complex64."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    yp = np.pad(y, (n_fft // 2, n_fft // 2))
    if yp.shape[0] < n_fft:
        yp = np.pad(yp, (0, n_fft - yp.shape[0]))
    frames = _frame(yp, n_fft, hop)
    win = _hann64(n_fft)
    out = np.empty((frames.shape[0], n_fft // 2 + 1), dtype=np.complex64)
    for s in range(0, frames.shape[0], block):
        out[s : s + block] = np.fft.rfft(frames[s : s + block] * win, axis=1)
    return out.T


def istft(D: np.ndarray, length: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """``librosa.istft(D, n_fft, hop_length=hop, length=length)`` (centred, Hann) as float32:
    windowed overlap-add divided by the window's summed square where that is above ``tiny``."""
    n_frames = D.shape[1]
    win = _hann64(n_fft)
    frames = np.fft.irfft(D.T, n=n_fft, axis=1)  # (n_frames, n_fft), float64 (librosa: float32 ytmp)
    frames = (frames * win).astype(np.float32)
    expected = n_fft + hop * (n_frames - 1)
    if n_fft % hop == 0:
        # overlap-add in n_fft // hop vectorised passes: each frame is n_fft // hop hop-blocks
        q_n = n_fft // hop
        yb = np.zeros((n_frames + q_n - 1, hop), dtype=np.float32)
        fb = frames.reshape(n_frames, q_n, hop)
        for q in range(q_n):
            yb[q : q + n_frames] += fb[:, q]
        y = yb.reshape(-1)
        wss = _window_sumsquare(n_fft, hop, n_frames)
    else:
        y = np.zeros(expected, dtype=np.float32)
        wss = np.zeros(expected, dtype=np.float32)
        win_sq = (win * win).astype(np.float32)
        for k in range(n_frames):
            y[k * hop : k * hop + n_fft] += frames[k]
            wss[k * hop : k * hop + n_fft] += win_sq
    nz = wss > _TINY32
    y[nz] /= wss[nz]
    start = n_fft // 2
    y = y[start:]
    if y.shape[0] >= length:
        return y[:length].copy()
    return np.pad(y, (0, length - y.shape[0]))


@functools.lru_cache(maxsize=4)
def _window_sumsquare(n_fft: int, hop: int, n_frames: int) -> np.ndarray:
    """Summed squared Hann windows of ``n_frames`` frames (``librosa.filters.window_sumsquare``)."""
    win_sq = (_hann64(n_fft) ** 2).astype(np.float32)
    q_n = n_fft // hop
    wb = np.zeros((n_frames + q_n - 1, hop), dtype=np.float32)
    for q in range(q_n):
        wb[q : q + n_frames] += win_sq[q * hop : (q + 1) * hop]
    out = wb.reshape(-1)
    out.flags.writeable = False
    return out


def median_filter_1d(x: np.ndarray, size: int, axis: int, block_rows: int = 64) -> np.ndarray:
    """``scipy.ndimage.median_filter`` with a 1-D window of odd ``size`` along ``axis`` of a 2-D
    array and ``mode="reflect"`` (half-sample symmetric), exactly (a median is a selection).
    Sliding windows + ``np.partition`` in row blocks: ~5x faster than scipy for size 31."""
    if size % 2 != 1:
        raise ValueError("median_filter_1d needs an odd size")
    a = np.asarray(x)
    if axis in (0, -2):
        return median_filter_1d(np.ascontiguousarray(a.T), size, 1, block_rows).T
    h = size // 2
    if a.shape[1] == 2:  # scipy's reflect differs from numpy's symmetric padding only here
        from scipy.ndimage import median_filter  # unreachable for gtzan57 (>= 5 frames)

        return median_filter(a, size=(1, size), mode="reflect")
    pad = np.pad(a, ((0, 0), (h, h)), mode="symmetric")
    out = np.empty_like(a)
    for s in range(0, a.shape[0], block_rows):
        w = np.lib.stride_tricks.sliding_window_view(pad[s : s + block_rows], size, axis=1)
        out[s : s + block_rows] = np.partition(w, h, axis=-1)[..., h]
    return out


def _softmask(X: np.ndarray, X_ref: np.ndarray, power: float = 2.0) -> np.ndarray:
    """``librosa.util.softmask(X, X_ref, power, split_zeros=True)``."""
    Z = np.maximum(X, X_ref)
    bad = Z < np.finfo(Z.dtype).tiny
    Z[bad] = 1
    mask = (X / Z) ** power
    ref = (X_ref / Z) ** power
    good = ~bad
    mask[good] /= mask[good] + ref[good]
    mask[bad] = 0.5
    return mask


def hpss_signals(D: np.ndarray, length: int, kernel: int = 31, n_fft: int = N_FFT,
                 hop: int = HOP) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.effects.hpss(y)`` given ``D = stft(y)``: median-filter HPSS (width ``kernel``
    across time for the harmonic part, across frequency for the percussive part), soft masks
    with power 2, resynthesised to ``length`` samples. Returns ``(harmonic, percussive)``."""
    mag = cabs(D)
    zeros = mag == 0
    mag_nz = mag + zeros
    phase = np.empty_like(D)
    phase.real = D.real / mag_nz + zeros
    phase.imag = D.imag / mag_nz
    if np.isfinite(mag).all():
        # finite non-negative float32 values sort like their int32 bit patterns, and integer
        # selection is ~25% faster; the medians are the same values (a median is a selection)
        key = np.ascontiguousarray(mag).view(np.int32)
        harm = median_filter_1d(key, kernel, axis=1).view(np.float32)
        perc = median_filter_1d(key, kernel, axis=0).view(np.float32)
    else:
        harm = median_filter_1d(mag, kernel, axis=1)
        perc = median_filter_1d(mag, kernel, axis=0)
    mask_h = _softmask(harm, perc)
    mask_p = _softmask(perc, harm)
    y_h = istft((mag * mask_h) * phase, length, n_fft, hop)
    y_p = istft((mag * mask_p) * phase, length, n_fft, hop)
    return y_h, y_p


def rms(y: np.ndarray, frame_length: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """``librosa.feature.rms(y=y)[0]``: centred (zero-padded) frame RMS."""
    y = np.asarray(y, dtype=np.float32)
    yp = np.pad(y, (frame_length // 2, frame_length // 2))
    sq = (yp.astype(np.float64) ** 2)
    c = np.concatenate([[0.0], np.cumsum(sq)])
    n = 1 + (yp.shape[0] - frame_length) // hop
    starts = np.arange(n) * hop
    power = (c[starts + frame_length] - c[starts]) / frame_length
    return np.sqrt(np.maximum(power, 0.0)).astype(np.float32)


def zero_crossing_rate(y: np.ndarray, frame_length: int = N_FFT, hop: int = HOP,
                       threshold: float = 1e-10) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate(y)[0]``: edge-padded centred frames; values with
    ``|y| <= threshold`` count as +0; a crossing is a sign-bit change between neighbours."""
    y = np.asarray(y, dtype=np.float32)
    yp = np.pad(y, (frame_length // 2, frame_length // 2), mode="edge")
    neg = yp < -threshold
    ch = np.concatenate([[0], np.cumsum(neg[1:] != neg[:-1], dtype=np.int64)])  # ch[i]: changes in 1..i
    n = 1 + (yp.shape[0] - frame_length) // hop
    starts = np.arange(n) * hop
    return ((ch[starts + frame_length - 1] - ch[starts]) / frame_length).astype(np.float64)


def _fft_freqs(sr: int, n_fft: int) -> np.ndarray:
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def _l1_columns(S: np.ndarray) -> np.ndarray:
    length = np.sum(np.abs(S).astype(np.float64), axis=0, keepdims=True)
    length[length < _TINY32] = 1.0
    return (S / length).astype(S.dtype)


def spectral_centroid(S: np.ndarray, sr: int, n_fft: int = N_FFT) -> np.ndarray:
    """``librosa.feature.spectral_centroid(S=S, sr=sr)[0]`` for a magnitude spectrogram."""
    freq = _fft_freqs(sr, n_fft)[:, None]
    return np.sum(freq * _l1_columns(S), axis=0)


def spectral_bandwidth(S: np.ndarray, sr: int, centroid: np.ndarray | None = None,
                       n_fft: int = N_FFT) -> np.ndarray:
    """``librosa.feature.spectral_bandwidth(S=S, sr=sr)[0]`` (p=2, normalised)."""
    if centroid is None:
        centroid = spectral_centroid(S, sr, n_fft)
    freq = _fft_freqs(sr, n_fft)[:, None]
    dev = np.abs(freq - centroid[None, :])
    return np.sum(_l1_columns(S) * dev**2, axis=0) ** 0.5


def spectral_rolloff(S: np.ndarray, sr: int, roll_percent: float = 0.85, n_fft: int = N_FFT) -> np.ndarray:
    """``librosa.feature.spectral_rolloff(S=S, sr=sr)[0]``: the lowest bin frequency where the
    cumulative energy reaches ``roll_percent`` of the frame's total."""
    freq = _fft_freqs(sr, n_fft)
    total = np.cumsum(S, axis=0)
    thr = roll_percent * total[-1]
    reached = total >= thr[None, :]
    idx = np.argmax(reached, axis=0)
    return freq[idx]


# -------------------------------------------------------------------------------- chroma
def _hz_to_octs(f: np.ndarray, tuning: float = 0.0, bins_per_octave: int = 12) -> np.ndarray:
    a440 = 440.0 * float(portable.exp2(tuning / bins_per_octave))
    with np.errstate(divide="ignore"):
        return portable.log2(np.asarray(f) / (float(a440) / 16))


def chroma_filterbank(sr: int, n_fft: int = N_FFT, n_chroma: int = 12, tuning: float = 0.0,
                      ctroct: float = 5.0, octwidth: float = 2.0) -> np.ndarray:
    """``librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning)``: ``(n_chroma, 1 + n_fft//2)``
    float32 (Gaussian bumps per pitch class, L2-normalised per bin, octave weighting, base C)."""
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * _hz_to_octs(frequencies, tuning, n_chroma)
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    D = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    D = np.remainder(D + half + 10 * n_chroma, n_chroma) - half
    wts = portable.exp(-0.5 * (2 * D / np.tile(binwidth, (n_chroma, 1))) ** 2)
    length = np.sum(wts**2, axis=0, keepdims=True) ** 0.5
    length[length < np.finfo(np.float64).tiny] = 1.0
    wts = wts / length
    wts *= np.tile(portable.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)


def tuning_candidates(S: np.ndarray, sr: int, n_fft: int = N_FFT, fmin: float = 150.0, fmax: float = 4000.0,
                      threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-frame part of :func:`estimate_tuning`: ``(pitches, mags, frames)`` of the
    ``piptrack`` peaks (pitch > 0) of the frames (columns) of ``S``, ``frames`` the column of each;
    each frame's peaks depend on that frame only."""
    S = np.abs(S)
    fmax = min(fmax, float(sr) / 2)
    freqs = _fft_freqs(sr, n_fft)
    avg = np.gradient(S, axis=0)
    # parabolic shift per bin: -b/a, or 0 when |b| >= |a|; first and last bins 0
    a = S[2:] + S[:-2] - 2 * S[1:-1]
    b = (S[2:] - S[:-2]) / 2
    shift = np.zeros_like(S)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(np.abs(b) >= np.abs(a), 0, -b / np.where(a == 0, 1, a))
    shift[1:-1] = inner.astype(S.dtype, copy=False)
    dskew = 0.5 * avg * shift
    ref_value = threshold * np.max(S, axis=0, keepdims=True)
    X = S * (S > ref_value)
    lmax = np.empty(X.shape, dtype=bool)
    lmax[1:-1] = (X[1:-1] > X[:-2]) & (X[1:-1] >= X[2:])
    lmax[0] = False  # librosa's numba stencil leaves the border at its cval (False)
    lmax[-1] = X[-1] > X[-2]
    fmask = ((fmin <= freqs) & (freqs < fmax))[:, None]
    fi, ti = np.nonzero(fmask & lmax)
    pitches = ((fi + shift[fi, ti]) * float(sr) / n_fft).astype(S.dtype)  # piptrack stores them as S.dtype
    mags = S[fi, ti] + dskew[fi, ti]
    # piptrack stores them in a zero array, so a pitch of exactly 0 counts as "no pitch"
    keep = pitches > 0
    return pitches[keep], mags[keep], ti[keep]


def tuning_from_candidates(pitches: np.ndarray, mags: np.ndarray, bins_per_octave: int = 12,
                           resolution: float = 0.01) -> float:
    """The reduction of :func:`estimate_tuning` over the peaks of all its frames (any order)."""
    if pitches.size == 0:
        return 0.0
    thr = np.median(mags)
    freqs_sel = pitches[mags >= thr]
    freqs_sel = freqs_sel[freqs_sel > 0]
    if freqs_sel.size == 0:
        return 0.0
    residual = np.mod(bins_per_octave * _hz_to_octs(freqs_sel), 1.0)
    residual[residual >= 0.5] -= 1.0
    bins = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    counts, edges = np.histogram(residual, bins)
    return float(edges[np.argmax(counts)])


def estimate_tuning(S: np.ndarray, sr: int, n_fft: int = N_FFT, bins_per_octave: int = 12,
                    resolution: float = 0.01, fmin: float = 150.0, fmax: float = 4000.0,
                    threshold: float = 0.1) -> float:
    """``librosa.estimate_tuning(S=S, sr=sr, bins_per_octave=...)`` (``piptrack`` peaks with
    parabolic interpolation, magnitude above their median, histogram of the pitch residuals).
    Returns 0.0 when no pitch is found (librosa warns and does the same)."""
    pitches, mags, _ = tuning_candidates(S, sr, n_fft, fmin, fmax, threshold)
    return tuning_from_candidates(pitches, mags, bins_per_octave, resolution)


def chroma_stft(power: np.ndarray, sr: int, n_fft: int = N_FFT, n_chroma: int = 12) -> np.ndarray:
    """``librosa.feature.chroma_stft(S=power, sr=sr)``: tuning estimated from ``power``, chroma
    filterbank, max-normalised per frame. ``(n_chroma, n_frames)`` float32."""
    return chroma_with_tuning(power, sr, estimate_tuning(power, sr, n_fft, bins_per_octave=n_chroma), n_fft, n_chroma)


def chroma_with_tuning(power: np.ndarray, sr: int, tuning: float, n_fft: int = N_FFT,
                       n_chroma: int = 12) -> np.ndarray:
    """:func:`chroma_stft` with the tuning given."""
    fb = chroma_filterbank(sr, n_fft, n_chroma, tuning)
    raw = portable.matmul(fb, power)
    length = np.max(np.abs(raw).astype(np.float64), axis=0, keepdims=True)
    length[length < _TINY32] = 1.0
    return (raw / length).astype(np.float32)


# --------------------------------------------------------------------------- mel / mfcc
def power_to_db(S: np.ndarray, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """``librosa.power_to_db(S, ref=1.0, amin=amin, top_db=top_db)`` (floor relative to the max)."""
    floored = np.maximum(amin, S)
    log_spec = 10.0 * portable.log10(floored).astype(floored.dtype)
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


@functools.lru_cache(maxsize=8)
def dct_ortho_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The first ``n_out`` rows of the orthonormal DCT-II of length ``n_in`` (``scipy.fft.dct(
    x, type=2, norm="ortho")`` as a matrix), float64."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    M = portable.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    M[0] /= math.sqrt(2.0)
    return M


def mel_power(power: np.ndarray, sr: int, n_fft: int = N_FFT, n_mels: int = 128) -> np.ndarray:
    """``librosa.feature.melspectrogram(S=power, sr=sr)`` (Slaney mel, fmax = sr/2), float32."""
    return portable.matmul(mel_filterbank(sr, n_fft, n_mels, 0.0, sr / 2.0), power)


def mfcc_from_power(power: np.ndarray, sr: int, n_mfcc: int = 20, n_fft: int = N_FFT,
                    mel: np.ndarray | None = None) -> np.ndarray:
    """``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc)`` from the power STFT of ``y``:
    DCT-II (ortho) of ``power_to_db`` of the mel spectrogram. ``(n_mfcc, n_frames)``."""
    if mel is None:
        mel = mel_power(power, sr, n_fft)
    db = power_to_db(mel)
    return portable.matmul(dct_ortho_matrix(n_mfcc, db.shape[0]), db.astype(np.float64)).astype(np.float32)


# --------------------------------------------------------------------------------- tempo
def onset_strength_from_db(S_db: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """``librosa.onset.onset_strength(S=S_db)``: mean over bands of the positive first
    difference (lag 1, no max filter), centred by ``1 + n_fft // (2 hop)`` leading zeros,
    trimmed to the number of frames."""
    S_db = np.asarray(S_db, dtype=np.float32)
    d = np.maximum(0.0, S_db[:, 1:] - S_db[:, :-1]).mean(axis=0)
    pad = 1 + n_fft // (2 * hop)
    env = np.concatenate([np.zeros(pad, dtype=d.dtype), d])
    return env[: S_db.shape[1]]


def tempo_from_envelope(env: np.ndarray, sr: int, hop: int = HOP, *, start_bpm: float = 120.0,
                        std_bpm: float = 1.0, ac_size: float = 8.0, max_tempo: float = 320.0,
                        block: int = 1024, none_if_flat: bool = True) -> float | None:
    """``librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=hop)[0]`` in NumPy.

    Same algorithm and defaults (librosa 0.11): a centred autocorrelation tempogram (Hann
    window of ``ac_size`` seconds, ``linear_ramp`` padding, max-normalised per frame), averaged
    over time, weighted by a log-normal prior around ``start_bpm`` and capped at ``max_tempo``.
    Frames are processed in blocks so memory stays bounded on long files. ``None`` for an
    envelope without any onset (or shorter than 8 frames) unless ``none_if_flat=False``, which
    gives librosa's answer there too (the prior's peak bin, ~117 BPM).
    """
    env = np.asarray(env, dtype=np.float64)
    n = env.shape[-1]
    if none_if_flat and (n < 8 or not np.any(env > 0)):
        return None
    win = int(int(ac_size * sr) // hop)
    half = win // 2
    padded = np.pad(env, (half, half), mode="linear_ramp", end_values=(0, 0))
    k = np.arange(win, dtype=np.float64)
    window = 0.5 - 0.5 * portable.cos(2.0 * np.pi * k / win)
    n_fft = 1 << int(math.ceil(math.log2(2 * win - 1)))
    acc = np.zeros(win, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    for s in range(0, n, block):
        m = min(block, n - s)
        frames = np.lib.stride_tricks.sliding_window_view(padded[s : s + m + win - 1], win)[:m]
        spec = np.fft.rfft(frames * window, n=n_fft, axis=1)
        ac = np.fft.irfft(spec.real**2 + spec.imag**2, n=n_fft, axis=1)[:, :win]
        peak = np.max(np.abs(ac), axis=1, keepdims=True)
        ac = np.where(peak < tiny, ac, ac / np.where(peak < tiny, 1.0, peak))
        acc += ac.sum(axis=0)
    tg = acc / n
    with np.errstate(divide="ignore"):
        bpms = np.concatenate([[np.inf], 60.0 * sr / (hop * np.arange(1.0, win))])
        logprior = -0.5 * ((portable.log2(bpms) - portable.log2(start_bpm)) / std_bpm) ** 2
    max_idx = int(np.argmax(bpms < max_tempo))
    logprior[:max_idx] = -np.inf
    best = int(np.argmax(portable.log1p(1e6 * tg) + logprior))
    return float(bpms[best])


def tempo(y: np.ndarray, sr: int) -> float:
    """``librosa.feature.tempo(y=y, sr=sr)[0]``: the onset envelope of the dB mel spectrogram
    (``power_to_db`` with ``top_db=80``), then :func:`tempo_from_envelope`."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.size < N_FFT:
        y = np.pad(y, (0, N_FFT - y.size))
    power = portable.abs2(stft(y))
    env = onset_strength_from_db(power_to_db(mel_power(power, sr)))
    return float(tempo_from_envelope(env, sr, HOP, none_if_flat=False))


# ----------------------------------------------------------------------------- gtzan57
def gtzan57(y: np.ndarray, sr: int) -> dict[str, float]:
    """The Kaggle GTZAN ``features_30_sec.csv`` features of one mono signal (see
    :mod:`mgr.features.tables`), as ``{name: value}`` (not yet in table order). ``y`` must hold at
    least ``N_FFT`` samples (``extract_features`` pads shorter input).

    Computed as :func:`gtzan57_frames` (what each STFT frame gives on its own) then
    :func:`gtzan57_reduce` (the signal-level rest), so :mod:`mgr.dsp.gtzan_stream` can share the
    frame-level work between overlapping segments."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    D = stft(y)
    fr = gtzan57_frames(D, sr)
    return gtzan57_reduce(y, sr, D, fr, tuning_from_candidates(fr["tun_pitch"], fr["tun_mag"]),
                          hpss_signals(D, len(y)))


def gtzan57_frames(D: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Per-frame pieces of :func:`gtzan57` of STFT frames ``D`` (each column on its own):
    spectral centroid / bandwidth / roll-off, the unclipped dB mel spectrogram, and the tuning
    peaks (``tun_pitch``, ``tun_mag``, ``tun_frame``: the column each peak is in)."""
    S = cabs(D)
    power = S**2
    cent = spectral_centroid(S, sr)
    mel = mel_power(power, sr)
    pitches, mags, cols = tuning_candidates(power, sr, N_FFT)
    return {"cent": cent, "bw": spectral_bandwidth(S, sr, cent), "rolloff": spectral_rolloff(S, sr),
            "mel_db": 10.0 * portable.log10(np.maximum(1e-10, mel)).astype(mel.dtype), "tun_pitch": pitches, "tun_mag": mags,
            "tun_frame": cols}


def gtzan57_reduce(y: np.ndarray, sr: int, D: np.ndarray, fr: dict[str, np.ndarray], tuning: float,
                   hpss: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """:func:`gtzan57` from its frame-level pieces ``fr`` (:func:`gtzan57_frames` of ``D = stft(y)``),
    the tuning of all the frames and the HPSS signals ``(harmonic, percussive)`` of ``y``."""
    out: dict[str, float] = {}

    def mv(name: str, x: np.ndarray) -> None:
        out[f"{name}_mean"] = float(np.mean(x))
        out[f"{name}_var"] = float(np.var(x))

    mv("chroma_stft", chroma_with_tuning(cabs(D) ** 2, sr, tuning))
    mv("rms", rms(y))
    mv("spectral_centroid", fr["cent"])
    mv("spectral_bandwidth", fr["bw"])
    mv("rolloff", fr["rolloff"])
    mv("zero_crossing_rate", zero_crossing_rate(y))
    harm, perc = hpss
    mv("harmony", harm)
    mv("perceptr", perc)
    db = fr["mel_db"]
    db = np.maximum(db, db.max() - 80.0)  # power_to_db's top_db, relative to this signal's max
    out["tempo"] = float(tempo_from_envelope(onset_strength_from_db(db), sr, HOP, none_if_flat=False))
    mfcc = portable.matmul(dct_ortho_matrix(20, db.shape[0]), db.astype(np.float64)).astype(np.float32)
    for i in range(20):
        out[f"mfcc{i + 1}_mean"] = float(np.mean(mfcc[i]))
        out[f"mfcc{i + 1}_var"] = float(np.var(mfcc[i]))
    return out


# ------------------------------------------------------------------------ mel filterbank
def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, float(portable.log(6.4)) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + portable.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, float(portable.log(6.4)) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * portable.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``(n_mels, n_fft//2 + 1)`` float32 Slaney mel filterbank, equal to
    ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False,
    norm="slaney")`` (tested) without importing librosa (``mgr predict`` starts faster); shared by the spectrogram store, the MFCCs here and predict."""
    fftfreqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)
