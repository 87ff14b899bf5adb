"""Audio decoding, resampling and the clip-length policy (windows: :mod:`mgr.audio.windows`).

Files are decoded with :mod:`soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, AU, AIFF,
MP3 with libsndfile >= 1.1) where libsndfile opens them, and otherwise with PyAV (FFmpeg:
AAC/ALAC in ``.m4a``/``.mp4``, raw AAC, WMA, and whatever else FFmpeg decodes), imported
lazily, only for such files (:func:`backend`). Both are resampled with :mod:`soxr` (the same
resampler librosa uses by default, ``soxr_hq``) and mixed to mono as the channel mean, so a
file gives the same samples whichever decoder reads it. A file that cannot be decoded raises
:class:`mgr.errors.AudioError` naming the file and the reason, never a library traceback;
what the C libraries print on fd 2 while opening/reading (libmpg123's "Note:" lines) is
discarded (:func:`quiet_stderr`), FFmpeg's log is not printed.

Public API
----------
``load_audio(path, *, sr, mono=True, offset_s=0.0, duration_s=None, pad=True)``
    Decode (only the requested region), mix to mono, resample, apply the clip policy.
``clip_policy(y, sr, *, duration_s, pad)``
    Crop to ``duration_s`` and zero-pad short clips when ``pad`` (the policy as a function).
``expected_samples(info_frames, info_sr, *, sr, offset_s=0.0, duration_s=None, pad=True)``
    The exact number of samples :func:`load_audio` is meant to return for a file of that size.
``stream_blocks(path, sr, block_s, *, mono=True)``
    Bounded-memory block reader for long files (soundfile blocks + a soxr stream resampler);
    refuses an implausible header and reads at most ``MAX_BLOCK_SAMPLES`` samples at a time.
``check_plausible(frames, samplerate, channels, path=None)``
    Refuse a valid but implausible header (sample rate outside 1000..384000 Hz).
``sf_path(path)``
    The path as file-system bytes for soundfile (names that are not valid UTF-8 work).
``backend(path)`` / ``av_info(path)``
    Which decoder reads a file (``"sf"`` or ``"av"``); the PyAV probe (header values, the
    first packets decoded so "not audio" is caught before any work).

Only numpy is imported at module level; soundfile, soxr and av are imported on first use.
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
    "av_info",
    "backend",
    "check_plausible",
    "clip_policy",
    "expected_samples",
    "load_audio",
    "stream_blocks",
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


class quiet_stderr:
    """Discard what C libraries write on file descriptor 2 inside the block (libsndfile's
    libmpg123 prints "Note: ..." / "[src/libmpg123/...] error: ..." lines on junk named .mp3).
    Python's ``sys.stderr`` is flushed first; fd 2 is restored on exit. Re-entrant."""

    _depth = 0

    def __enter__(self):
        cls = type(self)
        cls._depth += 1
        self._saved = None
        if cls._depth > 1:
            return self
        try:
            import sys

            sys.stderr.flush()
            self._saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except (OSError, ValueError, AttributeError):  # no fd 2 (embedded): nothing to hide
            if self._saved is not None:
                os.close(self._saved)
            self._saved = None
        return self

    def __exit__(self, *exc):
        type(self)._depth -= 1
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        return False


def _sf_info(path: str | os.PathLike):
    sf = _sf()
    with quiet_stderr():
        return sf.info(sf_path(path))


def _av():
    import av  # PyAV (FFmpeg bundled); its log callback is off by default, so FFmpeg prints nothing

    return av


def _av_reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())[:200]


def _av_open(path: str | os.PathLike):
    """``(file, container, stream)`` for the first audio stream; :class:`AudioError` otherwise.
    The file is opened by Python (any file name works) and handed to FFmpeg as a file object."""
    av = _av()
    fo = open(path, "rb")
    try:
        container = av.open(fo, "r")
    except Exception as e:
        fo.close()
        raise AudioError(f"audio: {path}: cannot decode ({_av_reason(e)})") from None
    streams = list(container.streams.audio)
    if not streams:
        container.close()
        fo.close()
        raise AudioError(f"audio: {path}: no audio stream")
    stream = streams[0]
    stream.thread_type = "NONE"  # one decode thread per file: parallelism is across files
    return fo, container, stream


#: at most this many undecodable packets are skipped (a damaged frame in a long file) before a
#: file is refused; when nothing at all decoded, the first error refuses it
AV_MAX_BAD_PACKETS = 100


def _av_frames(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, int]]:
    """Decoded audio of the first audio stream as ``((n, channels) float32, sample_rate)``.

    Every frame is converted to float at the first frame's rate and layout (FFmpeg's resampler
    only for a stream whose rate/layout changes mid-way). Damaged packets are skipped, up to
    :data:`AV_MAX_BAD_PACKETS`; a file whose first packets do not decode is not audio."""
    av = _av()
    fo, container, stream = _av_open(path)
    conv = None
    rate = layout = None
    n_ok = bad = 0
    try:
        with fo, container:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:  # InvalidDataError etc.: a damaged packet
                    bad += 1
                    if n_ok == 0 or bad > AV_MAX_BAD_PACKETS:
                        raise AudioError(f"audio: {path}: cannot decode ({_av_reason(e)})") from None
                    continue
                for frame in frames:
                    if rate is None:
                        rate, layout = int(frame.sample_rate), frame.layout.name
                        if rate <= 0 or not frame.layout.channels:
                            raise AudioError(f"audio: {path}: cannot decode (no sample rate/channels in the stream)")
                    if frame.format.name != "fltp" or frame.sample_rate != rate or frame.layout.name != layout:
                        if conv is None:
                            conv = av.AudioResampler(format="fltp", layout=layout, rate=rate)
                        outs = conv.resample(frame)
                    else:
                        outs = [frame]
                    for out in outs:
                        a = out.to_ndarray()  # (channels, n) float32
                        if a.shape[-1]:
                            n_ok += 1
                            yield np.ascontiguousarray(a.T, dtype=np.float32), rate
            if conv is not None:
                for out in conv.resample(None):
                    a = out.to_ndarray()
                    if a.shape[-1]:
                        yield np.ascontiguousarray(a.T, dtype=np.float32), rate
    except AudioError:
        raise
    except Exception as e:  # av.error.*, OSError
        raise AudioError(f"audio: {path}: cannot decode ({_av_reason(e)})") from None


def av_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, samplerate, channels)`` of a file as FFmpeg sees it, or :class:`AudioError`.

    ``frames`` comes from the container's duration (an estimate for some formats, e.g. raw AAC;
    ``0`` when the container declares none: decode to know). The first packets are decoded, so
    data FFmpeg merely guessed a format for (random bytes named ``.mp3``) is refused here."""
    fo, container, stream = _av_open(path)
    try:
        with fo, container:
            cc = stream.codec_context
            sr, channels = int(cc.sample_rate or 0), int(cc.channels or 0)
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"audio: {path}: cannot decode ({_av_reason(e)})") from None
    # decode the first frame: a format guessed from junk fails here
    gen = _av_frames(path)
    try:
        first = next(gen, None)
    finally:
        gen.close()
    if first is None:
        raise AudioError(f"audio: {path}: no audio frames")
    block, rate = first
    sr, channels = sr or rate, channels or block.shape[1]
    frames = int(round(seconds * sr)) if seconds and math.isfinite(seconds) and seconds > 0 else 0
    return frames, sr, channels


def backend(path: str | os.PathLike) -> str:
    """``"sf"`` when libsndfile opens the file, ``"av"`` when only FFmpeg does (or libsndfile
    reads the codec wrong, :data:`SF_AVOID_SUBTYPES`); else :class:`AudioError` with
    libsndfile's reason (and FFmpeg's when it differs)."""
    try:
        info = _sf_info(path)
        if str(getattr(info, "subtype", "")) in SF_AVOID_SUBTYPES:
            av_info(path)
            return "av"
        return "sf"
    except FileNotFoundError:
        raise AudioError(f"audio: {path}: file not found") from None
    except Exception as e:
        sf_reason = _reason(e)
    try:
        av_info(path)
    except AudioError as e:
        raise AudioError(f"{e} (libsndfile: {sf_reason})") from None
    return "av"


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
    if not os.path.isfile(path):
        raise AudioError(f"audio: {path}: file not found")
    try:
        info = _sf_info(path)
    except FileNotFoundError:
        raise AudioError(f"audio: {path}: file not found") from None
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        sf_reason = _reason(e)
        try:  # a format libsndfile does not read (AAC/ALAC, WMA, ...): FFmpeg's header
            frames, sr, channels = av_info(path)
        except AudioError as av_e:
            raise AudioError(_both_failed(path, sf_reason, str(av_e))) from None
        if frames <= 0 or sr <= 0:
            raise AudioError(f"audio: {path}: no audio frames (duration not declared)")
        return frames, sr, channels
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"audio: {path}: no audio frames")
    return int(info.frames), int(info.samplerate), int(info.channels)


def _both_failed(path: str | os.PathLike, sf_reason: str, av_error: str) -> str:
    """One line when neither libsndfile nor FFmpeg decodes a file: libsndfile's "not recognised"
    when it said so (FFmpeg's "Invalid data" says no more), else FFmpeg's reason (libsndfile's
    "File does not exist or is not a regular file (possibly a pipe?)" for junk named .mp3 is wrong)."""
    pre = f"audio: {path}: "
    av_reason = av_error[len(pre):] if av_error.startswith(pre) else av_error
    if "not recognised" in sf_reason or "not recognized" in sf_reason:
        return f"{pre}cannot decode ({sf_reason})"
    return f"{pre}{av_reason}"


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


def _av_read(path: str | os.PathLike, offset_s: float, duration_s: float | None,
             sf_reason: str) -> tuple[np.ndarray, int]:
    """The region ``[offset_s, offset_s + duration_s)`` of a file only FFmpeg decodes, as
    ``((n, channels) float32, sample_rate)`` (decoding stops at the region's end)."""
    parts: list[np.ndarray] = []
    rate, pos, start, stop = None, 0, 0, None
    try:
        for block, r in _av_frames(path):
            if rate is None:
                rate = r
                start = int(round(offset_s * r))
                stop = None if duration_s is None else start + int(round(duration_s * r))
            lo, hi = max(start - pos, 0), len(block) if stop is None else min(stop - pos, len(block))
            if hi > lo:
                parts.append(block[lo:hi])
            pos += len(block)
            if stop is not None and pos >= stop:
                break
    except AudioError as e:
        raise AudioError(_both_failed(path, sf_reason, str(e))) from None
    if rate is None:
        raise AudioError(f"audio: {path}: no audio frames")
    channels = parts[0].shape[1] if parts else 1
    return (np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)), rate


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
    f = None
    try:
        with quiet_stderr():
            f = sf.SoundFile(sf_path(path))
    except FileNotFoundError:
        raise AudioError(f"audio: {path}: file not found") from None
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        data, file_sr = _av_read(path, offset_s, duration_s, _reason(e))  # FFmpeg's formats
    else:
        if str(f.subtype) in SF_AVOID_SUBTYPES:
            f.close()
            f = None
            data, file_sr = _av_read(path, offset_s, duration_s, "libsndfile avoided for this codec")
    if f is not None:
        with f:
            frames, file_sr = int(f.frames), int(f.samplerate)
            if frames <= 0 or file_sr <= 0:
                raise AudioError(f"audio: {path}: no audio frames")
            start = min(int(round(offset_s * file_sr)), frames)
            n_read = frames - start if duration_s is None else min(int(round(duration_s * file_sr)), frames - start)
            try:
                with quiet_stderr():
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


def stream_blocks(
    path: str | os.PathLike, sr: int, block_s: float = 10.0, *, mono: bool = True, decoder: str | None = None
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 blocks of about ``block_s`` seconds at ``sr`` Hz.

    Memory stays bounded by one block whatever the file length: the file is read block by block
    (soundfile, or PyAV frames gathered into blocks for what only FFmpeg decodes) and a
    :class:`soxr.ResampleStream` carries the resampler state across blocks, so the
    concatenation of the blocks equals a one-shot resample up to filter edge effects.
    Blocks are mono ``(n,)`` or ``(channels, n)``. ``decoder`` forces ``"sf"`` or ``"av"``
    (default: :func:`backend`).
    """
    if decoder is None:
        decoder = "av" if _is_av(path) else "sf"
    if decoder == "av":
        yield from _stream_blocks_av(path, sr, block_s, mono=mono)
        return
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
        with quiet_stderr():
            f = sf.SoundFile(sf_path(path))
        with f:
            while True:
                with quiet_stderr():
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


def _is_av(path: str | os.PathLike) -> bool:
    """Whether libsndfile fails to open the file (so FFmpeg is to decode it)."""
    if not os.path.isfile(path):
        return False  # the soundfile path says "file not found"
    try:
        info = _sf_info(path)
    except FileNotFoundError:
        return False
    except Exception:
        return True
    return str(getattr(info, "subtype", "")) in SF_AVOID_SUBTYPES


#: libsndfile opens these but FFmpeg decodes them right: libsndfile 1.2's Ogg/Opus reader returns
#: wrong samples after the first block when read block by block (seen on files written by
#: libopus through FFmpeg: correlation 0.93 with the one-shot read), so streams go to PyAV
SF_AVOID_SUBTYPES = frozenset({"OPUS"})


def _stream_blocks_av(path: str | os.PathLike, sr: int, block_s: float, *, mono: bool) -> Iterator[np.ndarray]:
    """:func:`stream_blocks` for a file only FFmpeg decodes: frames gathered into blocks of
    about ``block_s`` seconds (at most ``MAX_BLOCK_SAMPLES`` samples), then as the soundfile path."""
    frames, file_sr, channels = av_info(path)
    check_plausible(max(frames, 1), file_sr, channels, path)
    blocksize = max(1, min(int(round(block_s * file_sr)), MAX_BLOCK_SAMPLES // max(1, channels)))
    stream = None
    pending: list[np.ndarray] = []
    n_pending = 0

    def emit(data: np.ndarray, last: bool) -> np.ndarray:
        nonlocal stream
        y = data.mean(axis=1) if mono else data
        if stream is not None:
            y = stream.resample_chunk(np.ascontiguousarray(y), last=last)
        return np.ascontiguousarray(y if mono else y.T, dtype=np.float32)

    rate = None
    for block, r in _av_frames(path):
        if rate is None:
            rate = r
            if r != file_sr:  # the decoder's rate is the truth (e.g. HE-AAC's doubled rate)
                check_plausible(1, r, block.shape[1], path)
                blocksize = max(1, min(int(round(block_s * r)), MAX_BLOCK_SAMPLES // max(1, block.shape[1])))
            if r != sr:
                import soxr

                stream = soxr.ResampleStream(r, sr, 1 if mono else block.shape[1], dtype="float32", quality="HQ")
        pending.append(block)
        n_pending += len(block)
        while n_pending >= blocksize:
            data = np.concatenate(pending) if len(pending) > 1 else pending[0]
            out, rest = data[:blocksize], data[blocksize:]
            pending, n_pending = ([rest] if len(rest) else []), len(rest)
            y = emit(out, last=False)
            if y.shape[-1]:
                yield y
    if rate is None:
        raise AudioError(f"audio: {path}: no audio frames")
    data = np.concatenate(pending) if pending else np.zeros((0, channels), np.float32)
    y = emit(data, last=True)
    if y.shape[-1]:
        yield y


def describe(params: Any) -> dict:
    """The audio params as a plain dict (for HDF5 attrs and model cards)."""
    return {
        "sample_rate": int(params.sample_rate),
        "duration_s": None if params.duration_s is None else float(params.duration_s),
        "offset_s": float(params.offset_s),
        "pad": bool(params.pad),
    }
