"""The one log-mel front end: params -> a frontend dict -> ``(n_mels, n_frames)`` float32.

:func:`frontend_config` resolves the ``audio``/``spectrogram`` params (and the preset) into a
plain dict of concrete values; :func:`compute_spectrogram` is *the* front end: the spectrogram
stage and ``mgr predict`` both call it, so training and inference see identical inputs.

* ``kind="logmel"`` (default): centred STFT (hann, ``center=True``, zero padding, as librosa),
  power spectrum, Slaney mel filterbank (``librosa.filters.mel``, htk=False, norm="slaney"),
  then dB with a **fixed** reference: ``10*log10(max(amin, S)) - 10*log10(ref)`` with
  ``ref=1.0, amin=1e-10`` and values below ``-top_db`` clipped to ``-top_db`` (the floor is
  relative to the fixed reference, not to the clip's maximum, so values compare across tracks).
* ``kind="stft"``: the same dB scaling of the STFT power (``n_fft//2 + 1`` rows).
* presets: ``default`` = ``audio.sample_rate`` (22050), n_fft 2048, hop 512, 128 mels;
  ``choi`` = 12 kHz, n_fft 512, hop 256, 96 mels (Choi et al.'s tagging front end);
  ``musicnn`` = musicnn's front end (Pons & Serra 2019): 16 kHz, n_fft 512, hop 256, 96 mels,
  reflect-padded centred frames (librosa < 0.10, which musicnn was trained with) and
  ``scale="log10_1p"``: ``log10(1 + 10000 * S)`` instead of dB (no floor; silence is 0).

The frontend dict's ``n_mels`` is the number of frequency rows for both kinds (for ``stft`` it
equals ``n_bins = n_fft//2 + 1``); ``hop`` and ``hop_length`` are the same value.

Used by the spectrogram store (:mod:`mgr.features.store`), the musicnn embeddings
(:mod:`mgr.pretrained.builtin`) and ``mgr predict``, so training and inference see identical
inputs. NumPy + scipy.fft only (no librosa at run time); equality with librosa is tested.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from mgr.audio.decode import resample
from mgr.dsp import portable
from mgr.dsp.kernels import mel_filterbank
from mgr.errors import ParamsError

DB_REF = 1.0
AMIN = 1e-10

__all__ = ["compute_spectrogram", "frontend_config", "mel_filterbank", "musicnn_frontend"]


# ---------------------------------------------------------------------------------- front end
def frontend_config(audio_params: Any, spectrogram_params: Any) -> dict:
    """Every front-end parameter as concrete values (presets resolved).

    ``audio_params`` is ``Params.audio`` (``sample_rate``, ...), ``spectrogram_params`` is
    ``Params.spectrogram``. The result is JSON-serialisable and is stored in the HDF5 attrs and
    copied into deep model cards.
    """
    sp = spectrogram_params
    if sp.preset == "musicnn":
        return musicnn_frontend()
    if sp.preset == "choi":
        sr, n_fft, hop, n_mels = 12000, 512, 256, 96
    else:
        sr, n_fft, hop, n_mels = int(audio_params.sample_rate), int(sp.n_fft), int(sp.hop_length), int(sp.n_mels)
    fmax = float(sr) / 2 if sp.fmax is None else min(float(sp.fmax), float(sr) / 2)
    fmin = float(sp.fmin)
    if sp.kind == "logmel" and fmin >= fmax:
        raise ParamsError(f"params: spectrogram.fmin ({fmin:g}) must be below fmax ({fmax:g} Hz)")
    n_bins = n_fft // 2 + 1
    rows = n_mels if sp.kind == "logmel" else n_bins
    top_db = None if sp.top_db is None else float(sp.top_db)
    floor_db = -top_db if top_db is not None else 10.0 * math.log10(AMIN) - 10.0 * math.log10(DB_REF)
    return _frontend_dict(str(sp.kind), str(sp.preset), sr, n_fft, hop, rows,
                          fmin if sp.kind == "logmel" else 0.0, fmax, pad_mode="constant", scale="db",
                          top_db=top_db, floor_db=float(floor_db))


def musicnn_frontend() -> dict:
    """musicnn's front end as a frontend dict (``mgr.pretrained.musicnn`` uses the same)."""
    sr = 16000
    return _frontend_dict("logmel", "musicnn", sr, 512, 256, 96, 0.0, sr / 2.0, pad_mode="reflect",
                          scale="log10_1p", top_db=None, floor_db=0.0, log_gain=10000.0)


def _frontend_dict(kind: str, preset: str, sr: int, n_fft: int, hop: int, rows: int, fmin: float, fmax: float,
                   *, pad_mode: str, scale: str, top_db: float | None, floor_db: float, **extra: float) -> dict:
    """Every key of a frontend dict (stored in the HDF5 attrs and in model cards)."""
    return {
        "kind": kind,
        "preset": preset,
        "sr": sr,
        "n_fft": n_fft,
        "win_length": n_fft,
        "hop": hop,
        "hop_length": hop,
        "window": "hann",
        "center": True,
        "pad_mode": pad_mode,
        "power": 2.0,
        "n_mels": rows,
        "n_bins": n_fft // 2 + 1,
        "fmin": fmin,
        "fmax": fmax,
        "mel_htk": False,
        "mel_norm": "slaney",
        "scale": scale,
        **extra,
        "ref": DB_REF,
        "amin": AMIN,
        "top_db": top_db,
        "floor_db": floor_db,
    }


MEL_GROUP = 16  # filters per dense sub-product (see _mel_groups)
BLOCK_SAMPLES = 1 << 17  # frames per block * n_fft: 512 KiB of float32 per buffer (cache-sized; bigger
# blocks cost page faults: glibc returns the freed temporaries to the kernel between blocks)


@functools.lru_cache(maxsize=8)
def _mel_groups(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, group: int = MEL_GROUP
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The filterbank as block-sparse dense pieces ``(m0, m1, lo, hi, W)``.

    ``W`` is ``basis[m0:m1, lo:hi].T`` (float32, C-contiguous) for ``group`` consecutive filters
    and the bins ``[lo, hi)`` they cover, so ``power[:, lo:hi] @ W`` is one small product per group:
    ~6x faster than the dense ``power @ basis.T`` (which multiplies mostly zeros) and than one
    strided matrix-vector product per filter, with the same result up to float32 rounding.
    """
    basis = mel_filterbank(sr, n_fft, n_mels, fmin, fmax).astype(np.float32)
    groups = []
    for m0 in range(0, n_mels, group):
        m1 = min(m0 + group, n_mels)
        nz = np.flatnonzero(basis[m0:m1].any(axis=0))
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        groups.append((m0, m1, lo, hi, np.ascontiguousarray(basis[m0:m1, lo:hi].T)))
    return groups


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    return portable.hann(n_fft).astype(np.float32)  # periodic, as librosa


def _frame_segments(y: np.ndarray, n_fft: int, hop: int, reflect: bool) -> tuple[list, int]:
    """Centred frames of ``y`` (padded by ``n_fft // 2`` on both sides) as strided views, without
    copying the signal: ``([(first_frame, stop_frame, frames_view), ...], n_frames)``.

    Only the few frames that reach into the padding are built from small padded copies of the
    signal's ends (zeros, or a reflection when ``reflect`` and the signal is longer than the pad,
    as ``np.pad``); the interior frames are views of ``y`` itself.
    """
    half = n_fft // 2
    n = y.shape[0]
    reflect = reflect and n > half
    mode = "reflect" if reflect else "constant"

    def view(a: np.ndarray, count: int) -> np.ndarray:
        return np.lib.stride_tricks.as_strided(
            a, shape=(count, n_fft), strides=(a.strides[0] * hop, a.strides[0]), writeable=False
        )

    if n + 2 * half < n_fft:  # shorter than one frame even after padding
        yp = np.pad(np.pad(y, (half, half), mode=mode), (0, n_fft - (n + 2 * half)))
        return [(0, 1, view(yp, 1))], 1
    n_frames = 1 + n // hop  # = 1 + (n + 2 * half - n_fft) // hop for even n_fft
    if n_fft % 2:
        n_frames = 1 + (n + 2 * half - n_fft) // hop
    n_left = min(n_frames, -(-half // hop))  # frames starting before sample 0
    # frames from k_right on end after the last sample: k * hop - half + n_fft > n
    k_right = max(n_left, min(n_frames, (n + half - n_fft) // hop + 1))
    if k_right - n_left < 1 or n < 2 * n_fft:  # short signal: one padded copy, as before
        return [(0, n_frames, view(np.pad(y, (half, half), mode=mode), n_frames))], n_frames
    segs = []
    # head: padded samples [0, (n_left - 1) * hop + n_fft) = pad + y[: (n_left - 1) * hop + n_fft - half]
    m = (n_left - 1) * hop + n_fft - half
    head = np.pad(y[: max(m, half + 1)], (half, 0), mode=mode)[: m + half]
    segs.append((0, n_left, view(head, n_left)))
    start = n_left * hop - half  # first interior frame's first sample in y
    segs.append((n_left, k_right, view(y[start:], k_right - n_left)))
    if k_right < n_frames:
        first = k_right * hop - half  # in y; the tail runs past n into the right pad
        tail = np.pad(y[min(first, n - half - 1) :], (0, half), mode=mode)[first - min(first, n - half - 1) :]
        segs.append((k_right, n_frames, view(tail, n_frames - k_right)))
    return segs, n_frames


def _frames_major(y: np.ndarray, frontend: dict, block: int | None = None) -> np.ndarray:
    """The spectrogram as ``(n_frames, rows)`` float32 (C-contiguous), computed in frame blocks.

    Per block of ``block`` frames (default: ``BLOCK_SAMPLES // n_fft``, so the buffers stay in
    cache): window into one reused buffer, then :func:`windowed_rows` (float32 FFT, power, mel,
    scale) written straight into the output rows while the block is still in cache.
    """
    n_fft, hop = int(frontend["n_fft"]), int(frontend["hop"])
    y = np.ascontiguousarray(y, dtype=np.float32)
    segments, n_frames = _frame_segments(y, n_fft, hop, frontend.get("pad_mode") == "reflect")
    win = _hann(n_fft)
    out = np.empty((n_frames, int(frontend["n_mels"])), dtype=np.float32)
    block = max(1, int(block) if block else BLOCK_SAMPLES // n_fft)
    buf = np.empty((min(block, n_frames), n_fft), dtype=np.float32)
    for s in range(0, n_frames, block):
        e = min(s + block, n_frames)
        b = buf[: e - s]
        for f0, f1, frames in segments:  # window the block's frames into the buffer
            lo, hi = max(s, f0), min(e, f1)
            if lo < hi:
                np.multiply(frames[lo - f0 : hi - f0], win, out=b[lo - s : hi - s])
        windowed_rows(b, frontend, out=out[s:e])
    return out


def frames_rows(frames: np.ndarray, frontend: dict) -> np.ndarray:
    """Rows of already-framed samples ``(n, n_fft)`` (centring/padding is the caller's):
    ``(n, rows)`` float32 -- the same kernel as :func:`compute_spectrogram`. The streamed front
    end of ``mgr predict`` uses it with NumPy's FFT (no scipy import at start-up; equal within
    float32 rounding)."""
    windowed = np.multiply(frames, _hann(int(frontend["n_fft"])), dtype=np.float32)
    return windowed_rows(windowed, frontend, rfft=lambda b: np.fft.rfft(b, axis=1).astype(np.complex64))


def _scipy_rfft(b: np.ndarray) -> np.ndarray:
    import scipy.fft

    return scipy.fft.rfft(b, axis=1, overwrite_x=True, workers=1)  # complex64 for float32 input


def windowed_rows(b: np.ndarray, frontend: dict, out: np.ndarray | None = None, rfft=_scipy_rfft) -> np.ndarray:
    """The kernel on windowed frames ``b`` (``(n, n_fft)`` float32, overwritten): float32
    ``scipy.fft.rfft`` (or ``rfft``), power ``|X|**2``, the mel projection as a few dense products
    over the filters' support (:func:`_mel_groups`), then the scale (dB with a fixed reference
    and floor, or ``log10(1 + gain * S)``, computed in float64). Returns ``out`` (``(n, rows)``).
    Machine-independent: the same bits whatever the SIMD level, libm or BLAS (:mod:`mgr.dsp.portable`)."""
    n_fft = int(frontend["n_fft"])
    rows = int(frontend["n_mels"])
    dst = np.empty((b.shape[0], rows), dtype=np.float32) if out is None else out
    spec = rfft(b)
    # Every step below gives the same bits on every machine (mgr.dsp.portable): |X|**2 as
    # re*re + im*im, the mel sums in a fixed order (einsum, no BLAS), the logarithm in float64 from
    # correctly rounded operations; FFTs and element-wise arithmetic are machine-independent already.
    if frontend["kind"] == "logmel":
        groups = _mel_groups(int(frontend["sr"]), n_fft, rows, float(frontend["fmin"]), float(frontend["fmax"]))
        power = portable.abs2(spec)
        for m0, m1, lo, hi, w in groups:
            if hi > lo:
                portable.matmul(power[:, lo:hi], w, out=dst[:, m0:m1])
            else:
                dst[:, m0:m1] = 0.0
    else:
        dst[...] = portable.abs2(spec)
    if frontend.get("scale") == "log10_1p":  # musicnn: log10(1 + gain * S)
        dst[...] = portable.log1p(dst * np.float64(frontend["log_gain"])) * portable.INV_LN10
        return dst
    # dB with a fixed reference; floor relative to the reference, not the clip maximum
    db = portable.log10(np.maximum(dst, np.float32(frontend["amin"])))
    db *= 10.0
    if frontend["ref"] != 1.0:
        db -= 10.0 * portable.log10(frontend["ref"])
    if frontend["top_db"] is not None:
        np.maximum(db, frontend["floor_db"], out=db)
    dst[...] = db
    return dst


def compute_spectrogram(y: np.ndarray, sr: int, frontend: dict) -> np.ndarray:
    """The front end: mono signal -> ``(n_mels, n_frames)`` float32 dB spectrogram.

    ``y`` is resampled (soxr HQ) when ``sr`` differs from ``frontend["sr"]``. ``n_frames`` is
    ``1 + len(y) // hop``. Equal (to float32 rounding) to
    ``librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft,
    hop_length=hop, n_mels=n_mels, fmin=fmin, fmax=fmax), ref=1.0, amin=1e-10, top_db=None)``
    clipped below at ``-top_db``. The result is a transposed view of a frames-major array.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"compute_spectrogram expects a mono 1-D signal, got shape {y.shape}")
    if int(sr) != int(frontend["sr"]):
        y = resample(y.astype(np.float32, copy=False), int(sr), int(frontend["sr"]))
    return _frames_major(y, frontend).T
