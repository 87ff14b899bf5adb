"""Which inputs and options ``mgr predict`` accepts, and the one-line reason when it refuses one.

* :func:`discover_inputs`: command-line paths -> files (directories expanded) or
  :class:`~mgr.inference.output.InputFailure`.
* :func:`check_file`: fail fast on a bad file (empty, truncated, not audio, unsupported codec,
  implausible header, too long) before decoding it.
* :func:`check_options`: every numeric option finite and in range (:class:`UsageError`, exit 2).
* :class:`_Budget`: the per-file duration / wall-time limits enforced while decoding.
"""

from __future__ import annotations

import math
import operator
import os
import stat
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mgr.audio.decode import _sf_info, av_info, check_plausible
from mgr.errors import AudioError, UserError
from mgr.inference.output import InputFailure

#: Extensions picked up when a directory is given (explicit files are tried whatever their name).
AUDIO_EXTS = (".wav", ".au", ".snd", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
              ".m4a", ".aac", ".wma", ".mp4")
#: Containers/codecs libsndfile cannot decode: decoded by PyAV (FFmpeg); named in the error
#: when FFmpeg cannot decode such a file either.
UNSUPPORTED_EXTS = {".m4a": "AAC/ALAC in MP4", ".aac": "AAC", ".wma": "WMA", ".mp4": "MP4"}
MIN_DURATION_S = 0.5
#: a file (or a segment) whose RMS is below this is silence: no genre, no tempo, no tags
SILENCE_DBFS = -60.0
DEFAULT_TAG_THRESHOLD = 0.5
#: longest file accepted by default (``--max-duration``), from its header and while decoding
DEFAULT_MAX_DURATION_S = 4 * 3600.0
#: ``--window`` range (seconds): below MIN_DURATION_S there is nothing to classify; above
#: MAX_WINDOW_S a short file would be padded to a huge silent segment
MAX_WINDOW_S = 600.0
MAX_OVERLAP = 0.95
MAX_TOP_K = 1000

# exit codes of `mgr predict` (documented in the README's "Predicting" section)
EXIT_OK = 0
EXIT_INPUT_FAILED = 1  # at least one input failed; the others were predicted
EXIT_USAGE = 2  # bad command line / params
EXIT_MODEL = 3  # the model could not be found or loaded safely; nothing was predicted


class UsageError(UserError):
    """A prediction option that cannot work with this model (e.g. --window below its window)."""

    exit_code = EXIT_USAGE


# ------------------------------------------------------------------------------- inputs
def discover_inputs(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path | InputFailure]:
    """Expand the command-line paths, in order: files as given, directories to their audio files
    (sorted; descending into sub-directories only with ``recursive``). A missing path or a
    directory without audio becomes an :class:`InputFailure`."""
    out: list[Path | InputFailure] = []
    for raw in paths:
        p = Path(raw)
        try:
            exists, is_dir = p.exists(), p.is_dir()
        except (OSError, ValueError) as e:  # e.g. a name too long for the file system
            out.append(InputFailure(str(raw), f"cannot access ({_os_reason(e)})"))
            continue
        if not exists:
            out.append(InputFailure(str(raw), "no such file or directory"))
            continue
        if is_dir:
            try:
                it = p.rglob("*") if recursive else p.iterdir()
                found = sorted(f for f in it if f.suffix.lower() in AUDIO_EXTS and f.is_file())
            except OSError as e:  # an unreadable directory
                out.append(InputFailure(str(raw), f"cannot read directory ({_os_reason(e)})"))
                continue
            if not found:
                hint = ""
                if not recursive and any(
                    f.suffix.lower() in AUDIO_EXTS for f in p.rglob("*") if f.is_file()
                ):
                    hint = " (its sub-directories have some: add --recursive)"
                out.append(InputFailure(str(raw), f"directory has no audio files{hint}"))
            out.extend(found)
            continue
        out.append(p)
    return out


def _os_reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _wav_au_truncation(path: Path, size: int) -> str | None:
    """For WAV/AU, compare the header's declared data size with the bytes on disk."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= len(head):
            cid, csize = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
            if cid == b"data":
                if csize not in (0, 0xFFFFFFFF) and pos + 8 + csize > size:
                    return f"truncated (header declares {csize} data bytes, file holds {size - pos - 8})"
                return None
            pos += 8 + csize + (csize & 1)
        return None
    if head[:4] == b".snd" and len(head) >= 12:
        off, dsize = struct.unpack(">II", head[4:12])
        if dsize != 0xFFFFFFFF and off + dsize > size:
            return f"truncated (header declares {dsize} data bytes, file holds {max(0, size - off)})"
    return None


#: WAV format tags libsndfile decodes (PCM, ADPCM, float, A-law, mu-law, GSM, G.721/723, extensible).
_WAV_TAGS_OK = {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040, 0x0014, 0xFFFE}
_WAV_TAG_NAMES = {0x0055: "MPEG layer 3", 0x0050: "MPEG", 0x00FF: "AAC", 0x0161: "WMA", 0x0162: "WMA Pro",
                  0x2000: "AC-3", 0x2001: "DTS", 0x0092: "Dolby AC-3 SPDIF", 0xF1AC: "FLAC"}


def _wav_format_tag(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 10 <= len(head):
        cid, csize = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"fmt ":
            return struct.unpack("<H", head[pos + 8 : pos + 10])[0]
        pos += 8 + csize + (csize & 1)
    return None


def _not_regular(mode: int) -> str:
    what = ("a FIFO/named pipe" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a directory" if stat.S_ISDIR(mode) else "not a file")
    return f"not a regular file ({what})"


def check_file(path: Path, max_duration_s: float | None = None) -> tuple[int, int, int]:
    """Fail fast on bad files: ``(frames, samplerate, channels)`` or :class:`AudioError` (one line).

    libsndfile's header when it opens the file, else FFmpeg's (PyAV: AAC/ALAC, WMA, ...; its
    ``frames`` is an estimate, ``0`` when the container declares no duration). Beyond
    decodable, the header must be plausible (:func:`mgr.audio.decode.check_plausible`: sample rate in
    1000..384000 Hz) and declare at most ``max_duration_s`` seconds."""
    try:
        st = path.stat()
    except (OSError, ValueError) as e:
        raise AudioError(f"cannot read ({_os_reason(e)})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(_not_regular(st.st_mode))
    size = st.st_size
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError("permission denied")
    try:
        info = _sf_info(path)
    except Exception as e:
        msg = _strip_open(str(e), path)
        try:  # what libsndfile does not read, FFmpeg may (AAC/ALAC in .m4a, WMA, Opus in .opus, ...)
            frames, sr, channels = av_info(path)
        except AudioError as av_e:
            av_reason = _strip_prefix(str(av_e), path)
            if av_reason.startswith("cannot decode (") and av_reason.endswith(")"):
                av_reason = "cannot decode: " + av_reason[len("cannot decode ("):-1]
            ext = path.suffix.lower()
            tag = _wav_format_tag(path)
            if tag is not None and tag not in _WAV_TAGS_OK:
                name = _WAV_TAG_NAMES.get(tag, "unknown")
                raise AudioError(f"unsupported codec (WAV format tag 0x{tag:04X}, {name}; convert to PCM WAV/FLAC)") from None
            if ext in UNSUPPORTED_EXTS:
                raise AudioError(f"not an audio file ({UNSUPPORTED_EXTS[ext]} expected; {av_reason})") from None
            if "not recognised" in msg or "not recognized" in msg:
                raise AudioError("not an audio file (format not recognised)") from None
            if "nsupported" in msg:
                raise AudioError(f"unsupported codec ({_short(msg)})") from None
            raise AudioError(f"not an audio file ({av_reason})") from None
        check_plausible(max(frames, 1), sr, channels)
        if max_duration_s is not None and frames and frames / sr > max_duration_s:
            raise AudioError(
                f"too long ({_hms(frames / sr)} declared by the header; --max-duration is {_hms(max_duration_s)})"
            )
        return frames, sr, channels
    trunc = _wav_au_truncation(path, size)
    if trunc:
        raise AudioError(trunc)
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError("no audio frames (empty or truncated stream)")
    frames, sr, channels = int(info.frames), int(info.samplerate), int(info.channels)
    check_plausible(frames, sr, channels)
    if max_duration_s is not None and frames / sr > max_duration_s:
        raise AudioError(
            f"too long ({_hms(frames / sr)} declared by the header; --max-duration is {_hms(max_duration_s)})"
        )
    return frames, sr, channels


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 60 else f"{seconds:.1f} s"


def _strip_open(msg: str, path: Path) -> str:
    """Drop soundfile's "Error opening <name>: " (the error line names the file already)."""
    for name in (os.fsencode(path), str(path)):
        pre = f"Error opening {name!r}: "
        if msg.startswith(pre):
            return msg[len(pre):]
    return msg


def _short(msg: str) -> str:
    msg = msg.strip().splitlines()[0] if msg.strip() else "unknown error"
    if ":" in msg and msg.startswith("Error opening"):
        msg = msg.split(":", 1)[1].strip()
    return msg[:160]



def _real(x: Any) -> float | None:
    """``x`` as a finite float, or ``None`` (NaN, inf, a bool, not a number)."""
    if isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def check_options(*, top_k: Any = 3, window_s: Any = None, overlap: Any = 0.5, aggregate: Any = "mean",
                  tag_threshold: Any = DEFAULT_TAG_THRESHOLD, max_duration_s: Any = DEFAULT_MAX_DURATION_S,
                  time_limit_s: Any = None, min_confidence: Any = None, timeline: Any = False) -> None:
    """Check every prediction option (finite, in range); :class:`UsageError` (exit 2) naming the
    first bad one. ``window_s``, ``max_duration_s``, ``time_limit_s`` and ``min_confidence``
    may be ``None``."""
    if min_confidence is not None:
        mc = _real(min_confidence)
        if mc is None or not 0.0 <= mc <= 1.0:
            raise UsageError(f"--min-confidence must be a number in [0, 1] (got {min_confidence!r})")
    if aggregate not in ("mean", "vote"):
        raise UsageError(f"--aggregate must be mean or vote (got {aggregate!r})")
    if isinstance(top_k, bool):
        raise UsageError(f"--top-k must be a whole number (got {top_k!r})")
    if not isinstance(top_k, int):
        try:
            top_k = operator.index(top_k)
        except TypeError:
            raise UsageError(f"--top-k must be a whole number (got {top_k!r})") from None
    if not 1 <= top_k <= MAX_TOP_K:
        raise UsageError(f"--top-k must be in 1..{MAX_TOP_K} (got {top_k})")
    ov = _real(overlap)
    if ov is None or not 0.0 <= ov <= MAX_OVERLAP:
        raise UsageError(f"--overlap must be a number in [0, {MAX_OVERLAP:g}] (got {overlap!r})")
    if window_s is not None:
        w = _real(window_s)
        if w is None or not MIN_DURATION_S <= w <= MAX_WINDOW_S:
            raise UsageError(
                f"--window must be a number of seconds in [{MIN_DURATION_S:g}, {MAX_WINDOW_S:g}] (got {window_s!r})"
            )
    th = _real(tag_threshold)
    if th is None or not 0.0 <= th <= 1.0:
        raise UsageError(f"--tag-threshold must be a number in [0, 1] (got {tag_threshold!r})")
    if max_duration_s is not None:
        m = _real(max_duration_s)
        if m is None or m < MIN_DURATION_S:
            raise UsageError(
                f"--max-duration must be a number of seconds of at least {MIN_DURATION_S:g} (got {max_duration_s!r})"
            )
    if time_limit_s is not None:
        t = _real(time_limit_s)
        if t is None or t <= 0:
            raise UsageError(f"--timeout must be a positive number of seconds (got {time_limit_s!r})")


class _Budget:
    """Per-file limits enforced while a file is decoded: at most ``max_duration_s`` seconds of
    audio (the header may under-declare it) and ``time_limit_s`` seconds of wall time."""

    def __init__(self, max_duration_s: float | None, time_limit_s: float | None):
        self.max_s, self.limit = max_duration_s, time_limit_s
        self.deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
        self.decoded_s = 0.0

    def add(self, n_samples: int, sr: int) -> None:
        self.decoded_s += n_samples / sr
        if self.max_s is not None and self.decoded_s > self.max_s + 1.0:
            raise AudioError(f"too long (more than --max-duration {_hms(self.max_s)} decoded, "
                             "more than its header declared)")
        self.check()

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise AudioError(f"gave up after --timeout {self.limit:g} s")


def _strip_prefix(msg: str, path: Path) -> str:
    for pre in (f"audio: {path}: ", f"{path}: "):
        if msg.startswith(pre):
            return msg[len(pre) :]
    return msg

