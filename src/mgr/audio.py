"""Audio decoding, resampling, the clip-length policy and window generators.

Everything here decodes with :mod:`soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis, AU, AIFF,
MP3 with libsndfile >= 1.1) and resamples with :mod:`soxr` (the same resampler librosa uses by
default, ``soxr_hq``). A file that cannot be decoded raises :class:`mgr.errors.AudioError`
naming the file and the reason, never a library traceback.

Public API
----------
``load_audio(path, *, sr, mono=True, offset_s=0.0, duration_s=None, pad=True)``
    Decode (only the requested region), mix to mono, resample, apply the clip policy.
``clip_policy(y, sr, *, duration_s, pad)``
    Crop to ``duration_s`` and zero-pad short clips when ``pad`` (the policy as a function).
``expected_samples(info_frames, info_sr, *, sr, offset_s=0.0, duration_s=None, pad=True)``
    The exact number of samples :func:`load_audio` is meant to return for a file of that size.
``windows(x, length, *, hop=None, overlap=None, pad_value=0.0)``
    Fixed-length windows along the last axis covering the whole input (last one end-aligned).
``stream_blocks(path, sr, block_s, *, mono=True)``
    Bounded-memory block reader for long files (soundfile blocks + a soxr stream resampler);
    refuses an implausible header and reads at most ``MAX_BLOCK_SAMPLES`` samples at a time.
``check_plausible(frames, samplerate, channels, path=None)``
    Refuse a valid but implausible header (sample rate outside 1000..384000 Hz).
``sf_path(path)``
    The path as file-system bytes for soundfile (names that are not valid UTF-8 work).

Only numpy is imported at module level; soundfile and soxr are imported on first use.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from mgr.errors import AudioError

__all__ = [
    "audio_info",
    "check_plausible",
    "clip_policy",
    "expected_samples",
    "load_audio",
    "n_windows",
    "stream_blocks",
    "window_starts",
    "windows",
]


def _sf():
    import soundfile

    return soundfile


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    # libsndfile's "Error opening b'/the/path': reason": the caller names the file already
    m = _OPEN_PREFIX.match(msg)
    if m:
        msg = msg[m.end():] or msg
    return msg[:200]


_OPEN_PREFIX = re.compile(r"Error opening b?(['\"]).*?\1: ")


def sf_path(path: str | os.PathLike) -> bytes:
    """The path as the bytes the file system holds, for :mod:`soundfile`: it encodes a ``str``
    path strictly, so a name with a non-UTF-8 byte (held by Python as a lone surrogate,
    ``os.fsdecode``) would be refused with "surrogates not allowed"."""
    return os.fsencode(path)


#: Plausible header values: a valid header outside these is refused before anything is decoded
#: (a 400 KB WAV declaring 1 Hz is "55 hours" of audio that would take minutes of CPU).
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000
#: :func:`stream_blocks` reads at most this many samples (frames x channels) at once.
MAX_BLOCK_SAMPLES = 1 << 22


def check_plausible(frames: int, samplerate: int, channels: int, path: str | os.PathLike | None = None) -> None:
    """Refuse a header whose values are valid but implausible for music (:class:`AudioError`).

    ``samplerate`` must be in ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` Hz and ``channels`` at least 1.
    """
    pre = f"audio: {path}: " if path is not None else ""
    if not MIN_SAMPLE_RATE <= samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{pre}implausible sample rate {samplerate} Hz in the header "
            f"(accepted: {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)"
        )
    if channels < 1 or frames <= 0:
        raise AudioError(f"{pre}no audio frames")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, samplerate, channels)`` of a file from its header, or :class:`AudioError`."""
    sf = _sf()
    if not os.path.isfile(path):
        raise AudioError(f"audio: {path}: file not found")
    try:
        info = sf.info(sf_path(path))
    except FileNotFoundError:
        raise AudioError(f"audio: {path}: file not found") from None
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"audio: {path}: cannot decode ({_reason(e)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"audio: {path}: no audio frames")
    return int(info.frames), int(info.samplerate), int(info.channels)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample along the first axis (time) with soxr HQ; float32 in, float32 out."""
    if sr_in == sr_out:
        return np.ascontiguousarray(y, dtype=np.float32)
    import soxr

    return np.ascontiguousarray(soxr.resample(y, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def clip_policy(y: np.ndarray, sr: int, *, duration_s: float | None, pad: bool = True) -> np.ndarray:
    """Apply the clip-length policy to a decoded (already offset) signal.

    ``duration_s=None`` keeps the whole signal. Otherwise the signal is cropped to
    ``round(duration_s * sr)`` samples and, when ``pad`` is true, shorter signals are padded
    with zeros at the end to exactly that length (when ``pad`` is false they stay short).
    """
    if duration_s is None:
        return y
    n = int(round(duration_s * sr))
    if y.shape[-1] > n:
        return y[..., :n]
    if pad and y.shape[-1] < n:
        widths = [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])]
        return np.pad(y, widths)
    return y


def expected_samples(
    info_frames: int,
    info_sr: int,
    *,
    sr: int,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    pad: bool = True,
) -> int:
    """Samples (at ``sr``) that :func:`load_audio` returns for a file of ``info_frames`` at ``info_sr``.

    Used to pre-allocate storage before decoding; the extraction stages force the decoded signal
    to exactly this length (a decoder that over/under-reports by a few samples cannot shift
    the layout).
    """
    start = min(int(round(offset_s * info_sr)), info_frames)
    avail = info_frames - start
    if duration_s is not None:
        want = int(round(duration_s * info_sr))
        avail = min(avail, want)
    n = int(math.ceil(avail * sr / info_sr)) if info_sr != sr else avail
    if duration_s is not None:
        target = int(round(duration_s * sr))
        n = target if pad else min(n, target)
    return max(n, 0)


def fix_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the last axis to exactly ``n`` samples."""
    if y.shape[-1] == n:
        return y
    if y.shape[-1] > n:
        return y[..., :n]
    widths = [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])]
    return np.pad(y, widths)


def load_audio(
    path: str | os.PathLike,
    *,
    sr: int,
    mono: bool = True,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    pad: bool = True,
) -> np.ndarray:
    """Decode ``path`` to float32 at ``sr`` Hz.

    Parameters
    ----------
    path : audio file readable by libsndfile.
    sr : target sample rate (soxr HQ resampling when it differs from the file's).
    mono : mix channels to mono (mean) -> shape ``(n,)``; otherwise ``(channels, n)``.
    offset_s, duration_s : only this region is read from disk (``duration_s=None``: to the end).
    pad : zero-pad clips shorter than ``duration_s`` to exactly ``duration_s`` (see :func:`clip_policy`).

    Raises
    ------
    AudioError : the file is missing, cannot be decoded, or holds no samples in the region.
    """
    sf = _sf()
    if not os.path.isfile(path):
        raise AudioError(f"audio: {path}: file not found")
    # one open for the header and the samples (what audio_info + sf.read did with two)
    try:
        f = sf.SoundFile(sf_path(path))
    except FileNotFoundError:
        raise AudioError(f"audio: {path}: file not found") from None
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"audio: {path}: cannot decode ({_reason(e)})") from None
    with f:
        frames, file_sr = int(f.frames), int(f.samplerate)
        if frames <= 0 or file_sr <= 0:
            raise AudioError(f"audio: {path}: no audio frames")
        start = min(int(round(offset_s * file_sr)), frames)
        n_read = frames - start if duration_s is None else min(int(round(duration_s * file_sr)), frames - start)
        try:
            if start:
                f.seek(start)
            data = f.read(n_read, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(f"audio: {path}: cannot decode ({_reason(e)})") from None
    if data.shape[0] == 0 and not (pad and duration_s):
        raise AudioError(f"audio: {path}: no samples after offset {offset_s:g} s")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"audio: {path}: decoded samples contain NaN or inf")
    if mono:  # (n,): a mono file's one channel as is (the mean of one value), else the mean
        y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    else:
        y = data.T  # (channels, n)
    if file_sr != sr:
        y = resample(y if mono else y.T, file_sr, sr)
        if not mono:
            y = y.T
    y = np.ascontiguousarray(y, dtype=np.float32)
    return clip_policy(y, sr, duration_s=duration_s, pad=pad)


def n_windows(total: int, length: int, hop: int) -> int:
    """Number of windows :func:`windows` yields for ``total`` samples/frames."""
    if total <= length:
        return 1
    return 1 + int(math.ceil((total - length) / hop))


def window_starts(total: int, length: int, hop: int) -> np.ndarray:
    """Start positions of windows covering ``[0, total)``: regular hops, the last one end-aligned."""
    if length <= 0 or hop <= 0:
        raise ValueError("window length and hop must be positive")
    if total <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, total - length + 1, hop, dtype=np.int64)
    if starts[-1] + length < total:
        starts = np.append(starts, total - length)
    return starts


def _hop(length: int, hop: int | None, overlap: float | None) -> int:
    if hop is not None and overlap is not None:
        raise ValueError("give hop or overlap, not both")
    if hop is None:
        ov = 0.0 if overlap is None else float(overlap)
        if not 0.0 <= ov < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {ov}")
        hop = max(1, int(round(length * (1.0 - ov))))
    return int(hop)


def windows(
    x: np.ndarray,
    length: int,
    *,
    hop: int | None = None,
    overlap: float | None = None,
    pad_value: float = 0.0,
) -> Iterator[np.ndarray]:
    """Yield windows of ``length`` along the last axis of ``x`` (a signal or a spectrogram).

    Windows start every ``hop`` (or ``length * (1 - overlap)``) samples/frames; the last one is
    aligned to the end so the whole input is covered. An input shorter than ``length`` gives one
    window padded at the end with ``pad_value``. Windows are views of ``x`` where possible.
    """
    hop = _hop(length, hop, overlap)
    total = x.shape[-1]
    if total < length:
        widths = [(0, 0)] * (x.ndim - 1) + [(0, length - total)]
        yield np.pad(x, widths, constant_values=pad_value)
        return
    for s in window_starts(total, length, hop):
        yield x[..., s : s + length]


def stream_blocks(
    path: str | os.PathLike, sr: int, block_s: float = 10.0, *, mono: bool = True
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 blocks of about ``block_s`` seconds at ``sr`` Hz.

    Memory stays bounded by one block whatever the file length: soundfile reads the file block
    by block and a :class:`soxr.ResampleStream` carries the resampler state across blocks, so
    the concatenation of the blocks equals a one-shot resample up to filter edge effects.
    Blocks are mono ``(n,)`` or ``(channels, n)``.
    """
    sf = _sf()
    frames, file_sr, channels = audio_info(path)
    check_plausible(frames, file_sr, channels, path)
    # about block_s seconds, but never more than MAX_BLOCK_SAMPLES samples (many channels / high rates)
    blocksize = max(1, min(int(round(block_s * file_sr)), MAX_BLOCK_SAMPLES // max(1, channels)))
    stream = None
    if file_sr != sr:
        import soxr

        stream = soxr.ResampleStream(file_sr, sr, 1 if mono else channels, dtype="float32", quality="HQ")
    try:
        with sf.SoundFile(sf_path(path)) as f:
            while True:
                data = f.read(blocksize, dtype="float32", always_2d=True)
                last = data.shape[0] < blocksize
                y = data.mean(axis=1) if mono else data
                if stream is not None:
                    y = stream.resample_chunk(np.ascontiguousarray(y), last=last)
                if y.shape[0]:
                    yield np.ascontiguousarray(y if mono else y.T, dtype=np.float32)
                if last:
                    break
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"audio: {path}: cannot decode ({_reason(e)})") from None


def describe(params: Any) -> dict:
    """The audio params as a plain dict (for HDF5 attrs and model cards)."""
    return {
        "sample_rate": int(params.sample_rate),
        "duration_s": None if params.duration_s is None else float(params.duration_s),
        "offset_s": float(params.offset_s),
        "pad": bool(params.pad),
    }
