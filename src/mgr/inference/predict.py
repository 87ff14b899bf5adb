"""``mgr predict``: genre, tempo and tags for audio files from any trained artifact.

Pipeline per input file
-----------------------
* **Deep models** (``kind: deep``): the file is decoded block by block
  (:func:`mgr.audio.decode.stream_blocks`, soxr stream resampling to the card's ``frontend.sr``) and
  turned into log-mel frames incrementally with the card's front end (:class:`StreamingFrontEnd`,
  the same centred STFT / Slaney mel / fixed-reference dB as
  :func:`mgr.features.store.compute_spectrogram`, checked equal in the tests). Model windows of
  ``window_frames`` frames are cut from a ring of frames as they arrive and run in small batches,
  so memory is bounded by one block plus one segment whatever the file length. The network is
  the artifact's ``model.onnx`` on onnxruntime (:func:`mgr.models.deep.load`, the same object
  the evaluate stage scores); TensorFlow/Keras are never imported.
* **Classical models** (``kind: classical``): the whole file is decoded with the training audio
  policy (:func:`mgr.audio.decode.load_audio`) and its handcrafted features
  (:func:`mgr.features.tables.extract_features`) go to the model, as in training. ``--window`` splits it
  into segments whose predictions are aggregated instead.
* **Aggregation** over segments: ``mean`` (mean probability) or ``vote`` (majority of segment
  argmaxes; the reported probabilities are then the vote fractions).
* **Tempo**: the model's tempo head when it has one (probability-weighted bin centre), else
  the DSP estimate ``librosa.feature.tempo`` as re-implemented in :mod:`mgr.dsp.kernels` (for
  ``gtzan57`` classical models, its ``tempo`` feature, which is exactly that estimate).
  Classical models run their ``model.onnx`` on onnxruntime too (:func:`mgr.models.classical.load`,
  as evaluate does); the ``gtzan57`` features come from :mod:`mgr.dsp.kernels`, so a classical
  prediction imports neither scikit-learn, XGBoost nor librosa. **Tags**: the tags head's mean scores above
  ``--tag-threshold``.

Bad inputs
----------
Each failing input gives one :class:`InputFailure` with a one-line reason (missing path, a
directory with no audio, zero bytes, truncated, not audio / format not recognised, an
unsupported codec, too short, undecodable); the other inputs are still processed.
Files shorter than one window are **zero-padded to one window with a warning**; files shorter
than :data:`MIN_DURATION_S` are refused (nothing meaningful to classify).

Hostile inputs
--------------
A header must be plausible as well as valid (sample rate in
:data:`mgr.audio.decode.MIN_SAMPLE_RATE`..:data:`mgr.audio.decode.MAX_SAMPLE_RATE` Hz, duration at most
``max_duration_s``, also enforced while decoding), and ``time_limit_s`` bounds the time spent on
one file. Every numeric option is checked (finite, in range) by :func:`check_options`. Names
that are not valid UTF-8 are decoded and printed losslessly (:func:`path_fields`), error lines
escape control characters (:func:`display_text`), JSON is strict (no NaN, no lone surrogates),
and a non-finite model output is an error for that file only. Model names are single path
components resolved inside ``models/`` (:func:`resolve_model`).

Public API: :func:`discover_inputs`, :func:`resolve_model`, :func:`load_predictor`,
:class:`Predictor` (``.predict_file(path)``), :class:`Prediction`, :class:`InputFailure`,
:func:`predict_many`, :func:`list_models`, :func:`to_json_line`, :func:`csv_rows`,
:class:`StreamingFrontEnd` (the streamed form of :mod:`mgr.dsp.frontend`, its kernel shared).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import stat
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgr.cards import read_card
from mgr.errors import ArtifactError, AudioError, UserError
from mgr.dsp.frontend import frames_rows
from mgr.dsp import kernels as _fastdsp

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
BLOCK_S = 20.0  # decode block length for streaming (seconds)
BATCH_WINDOWS = 16  # model windows per forward pass

# exit codes of `mgr predict` (documented in the README's "Predicting" section)
EXIT_OK = 0
EXIT_INPUT_FAILED = 1  # at least one input failed; the others were predicted
EXIT_USAGE = 2  # bad command line / params
EXIT_MODEL = 3  # the model could not be found or loaded safely; nothing was predicted


class UsageError(UserError):
    """A prediction option that cannot work with this model (e.g. --window below its window)."""

    exit_code = EXIT_USAGE


@dataclass
class Prediction:
    path: str
    genre: str | None  # None for a tagger (a built-in pretrained model): its answer is its tags
    top_k: list[tuple[str, float]]
    tempo_bpm: float | None
    tempo_source: str
    tags: list[tuple[str, float]] = field(default_factory=list)  # (tag, score), best first
    warnings: list[str] = field(default_factory=list)
    n_windows: int = 0
    duration_s: float = 0.0
    #: why ``genre`` is null for a genre model: silence, or below ``--min-confidence``
    reason: str | None = None
    #: ``--timeline``: the segments the answer aggregates, in time order (else ``None``)
    segments: list[Segment] | None = None
    #: set by ``--tempo`` (:mod:`mgr.tempo.estimate`): the estimator used and its confidence
    tempo_estimator: str | None = None
    tempo_confidence: float | None = None

    ok = True


@dataclass
class Segment:
    """One segment of a ``--timeline``: seconds from the start of the file, its own top-k,
    tempo and tags; ``silent`` segments (RMS below :data:`SILENCE_DBFS`) have none and are left
    out of the file's answer."""

    start_s: float
    end_s: float
    genre: str | None
    top_k: list[tuple[str, float]]
    tempo_bpm: float | None
    tags: list[tuple[str, float]] = field(default_factory=list)
    silent: bool = False
    reason: str | None = None


@dataclass
class InputFailure:
    path: str
    error: str
    ok = False


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
    from mgr.audio.decode import _sf_info, av_info, check_plausible

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


# ------------------------------------------------------------------------------- models
#: a model name: one path component (no "/", no "..", no leading dot), printable ASCII
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def valid_model_name(name: Any) -> bool:
    """Whether ``name`` can name ``models/<name>``: a single path component of letters, digits
    and ``._+-`` (not starting with a dot), so ``../x`` or ``a/b`` never leave ``models/``."""
    return isinstance(name, str) and _MODEL_NAME_RE.fullmatch(name) is not None


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):  # a name too long, an embedded NUL
        return False


def _model_in(models: Path, name: str) -> Path | None:
    """``models/<name>`` when ``name`` is a valid model name naming a directory that really lies
    inside ``models/`` (a symlink pointing elsewhere is refused); else ``None``."""
    if not valid_model_name(name) or not _is_dir(models / name):
        return None
    d = models / name
    try:
        d.resolve().relative_to(models.resolve())
    except (ValueError, OSError):
        raise ArtifactError(
            f"{d} resolves outside {models} ({d.resolve()}); pass that directory itself with --model DIR"
        ) from None
    return d


def resolve_model(spec: str | None, root: str | os.PathLike = ".") -> Path:
    """The model directory for ``--model``: a directory, ``models/NAME``, or (``None``) the best
    model by test accuracy in ``metrics/summary.json`` (else ``reports/leaderboard.md``).

    ``NAME`` (and every name read from the summary or the leaderboard) must be a single path
    component (:func:`valid_model_name`) and is looked up only inside ``models/``."""
    root = Path(root)
    models = root / "models"
    if spec:
        p = Path(spec)
        if _is_dir(p):
            return p
        found = _model_in(models, spec)
        if found is not None:
            return found
        from mgr.pretrained.builtin import builtin_name, ensure_builtin

        if builtin_name(spec):  # musicnn-msd / musicnn-mtt: built from the installed wheel on first use
            return ensure_builtin(spec)
        have = sorted(d.name for d in models.iterdir() if (d / "model.json").is_file()) if models.is_dir() else []
        raise ArtifactError(
            f"model {spec!r} not found (not a directory, and no {models / spec}); "
            + (f"available: {', '.join(have)}" if have else "no trained models in models/ (run dvc repro)")
            + "; built in: musicnn-msd, musicnn-mtt"
        )
    best = best_model_name(root)
    found = _model_in(models, best) if best else None
    if found is not None:
        return found
    have = sorted(d.name for d in models.iterdir() if (d / "model.json").is_file()) if models.is_dir() else []
    if len(have) == 1:
        return models / have[0]
    if not have:
        raise ArtifactError("no trained models in models/ (run `dvc repro`, or pass --model DIR)")
    raise ArtifactError(f"no leaderboard to choose a default model from; pass --model (available: {', '.join(have)})")


def _acc_of(entry: Any) -> float | None:
    if isinstance(entry, (int, float)):
        return float(entry)
    if isinstance(entry, dict):
        for key in ("accuracy", "track_accuracy", "acc"):
            if key in entry:
                v = _acc_of(entry[key])
                if v is not None:
                    return v
        for key in ("track", "test", "headline", "mean"):
            if key in entry:
                v = _acc_of(entry[key])
                if v is not None:
                    return v
    return None


def best_model_name(root: str | os.PathLike = ".") -> str | None:
    """Name of the model with the best test accuracy (``metrics/summary.json``, else the
    leaderboard table), or ``None`` when neither exists."""
    root = Path(root)
    summary = root / "metrics" / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except (ValueError, RecursionError, OSError):  # not JSON / not UTF-8 / nested too deep
            data = None
        if isinstance(data, dict):
            models = data.get("models", data)
            scores = {}
            # only valid model names (never "../x": the default model is looked up in models/)
            if isinstance(models, dict):
                for name, entry in models.items():
                    acc = _acc_of(entry)
                    if acc is not None and math.isfinite(acc) and valid_model_name(name):
                        scores[name] = acc
            elif isinstance(models, list):
                for entry in models:
                    if isinstance(entry, dict) and "name" in entry:
                        acc = _acc_of(entry)
                        if acc is not None and math.isfinite(acc) and valid_model_name(entry["name"]):
                            scores[str(entry["name"])] = acc
            if scores:
                return max(scores, key=lambda k: scores[k])
    board = root / "reports" / "leaderboard.md"
    if board.is_file():
        try:
            rows = [r for r in board.read_text().splitlines() if r.startswith("|")]
        except (ValueError, OSError):
            rows = []
        if len(rows) > 2:
            head = [c.strip().lower() for c in rows[0].strip("|").split("|")]
            acc_col = next((i for i, c in enumerate(head) if "acc" in c and "bal" not in c), None)
            name_col = next((i for i, c in enumerate(head) if c in ("model", "name")), 0)
            best, best_v = None, -1.0
            for r in rows[2:]:
                cells = [c.strip().strip("*`") for c in r.strip("|").split("|")]
                try:
                    v = float(cells[acc_col].split()[0]) if acc_col is not None else 0.0
                except (ValueError, IndexError):
                    continue
                if not math.isfinite(v) or name_col >= len(cells) or not valid_model_name(cells[name_col]):
                    continue
                if v > best_v:
                    best, best_v = cells[name_col], v
            return best
    return None


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
            import operator

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


class Predictor:
    """A loaded artifact that turns one audio file into a :class:`Prediction`."""

    name: str
    kind: str
    labels: list[str]
    runtime: str
    card: dict

    #: what the model was trained on (:func:`training_data`), ``None`` when unknown
    trained_on: dict | None = None

    def __init__(self, *, top_k: int = 3, window_s: float | None = None, overlap: float = 0.5,
                 aggregate: str = "mean", tag_threshold: float = DEFAULT_TAG_THRESHOLD,
                 max_duration_s: float | None = DEFAULT_MAX_DURATION_S, time_limit_s: float | None = None,
                 min_confidence: float | None = None, timeline: bool = False):
        check_options(top_k=top_k, window_s=window_s, overlap=overlap, aggregate=aggregate,
                      tag_threshold=tag_threshold, max_duration_s=max_duration_s, time_limit_s=time_limit_s,
                      min_confidence=min_confidence)
        self.min_confidence = None if min_confidence is None else float(min_confidence)
        self.timeline = bool(timeline)
        self.top_k, self.overlap = int(top_k), float(overlap)
        self.window_s = None if window_s is None else float(window_s)
        self.aggregate, self.tag_threshold = aggregate, float(tag_threshold)
        self.max_duration_s = None if max_duration_s is None else float(max_duration_s)
        self.time_limit_s = None if time_limit_s is None else float(time_limit_s)

    def _budget(self) -> _Budget:
        return _Budget(self.max_duration_s, self.time_limit_s)

    def predict_file(self, path: Path) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    # shared helpers
    def _combine(self, seg_probs: np.ndarray) -> np.ndarray:
        if self.aggregate == "vote" and len(seg_probs) > 1:
            votes = np.bincount(seg_probs.argmax(axis=1), minlength=seg_probs.shape[1]).astype(np.float64)
            # ties broken by mean probability (tiny epsilon keeps the vote order)
            return votes / votes.sum() + 1e-9 * seg_probs.mean(axis=0)
        return seg_probs.mean(axis=0)

    def _confident(self, top: list[tuple[str, float]]) -> tuple[str | None, str | None]:
        """``(genre, reason)``: the top label, or ``None`` and why when its probability is below
        ``--min-confidence``."""
        if not top:
            return None, None
        if self.min_confidence is not None and top[0][1] < self.min_confidence:
            return None, (f"unknown: top probability {top[0][1]:.2f} ({top[0][0]}) is below "
                          f"--min-confidence {self.min_confidence:g}")
        return top[0][0], None

    def _silent_prediction(self, path: Path, warnings: list[str], n_windows: int, duration: float,
                           segments: list[Segment] | None) -> Prediction:
        reason = f"silence: no signal above {SILENCE_DBFS:g} dBFS"
        warnings.append(reason)
        return Prediction(str(path), None, [], None, "silence", [], warnings, n_windows, duration, reason,
                          segments if self.timeline else None)

    def _top(self, probs: np.ndarray) -> list[tuple[str, float]]:
        if not np.all(np.isfinite(probs)):  # (the ONNX runtime refuses these already)
            raise AudioError("model output is not finite (NaN/inf) for this file")
        order = np.argsort(-probs, kind="stable")[: self.top_k]
        return [(self.labels[i], float(round(probs[i], 6))) for i in order]


# ----------------------------------------------------------------------------- front end
class StreamingFrontEnd:
    """The card's front end applied incrementally: ``push(samples)`` returns the new frames
    ``(k, rows)``; ``finish()`` the last ones. The frames equal those of
    :func:`mgr.dsp.frontend.compute_spectrogram` on the whole signal (centring and padding are done
    here, incrementally; each block of frames goes through :func:`mgr.dsp.frontend.frames_rows`).
    """

    SUPPORTED = {"window": ("hann",), "center": (True,), "pad_mode": ("constant", "reflect"), "power": (2.0,),
                 "scale": ("db", "log10_1p")}

    def __init__(self, frontend: dict):
        for k, v in self.SUPPORTED.items():
            if k in frontend and frontend[k] not in v:
                raise ArtifactError(f"model card front end {k}={frontend[k]!r} is not supported by mgr predict "
                                    f"(expects {' or '.join(map(repr, v))})")
        if frontend.get("mel_htk") or frontend.get("mel_norm", "slaney") != "slaney":
            raise ArtifactError("model card front end uses an HTK/unnormalised mel scale, which mgr predict does not support")
        self.sr = int(frontend["sr"])
        self.n_fft = int(frontend["n_fft"])
        self.hop = int(frontend.get("hop", frontend.get("hop_length")))
        self.rows = int(frontend["n_mels"])
        # complete the card's dict with mgr.dsp.frontend's defaults for keys older cards lack
        top_db = frontend.get("top_db")
        self.fe = {"amin": 1e-10, "ref": 1.0, "top_db": None, "scale": "db", "kind": "logmel",
                   "floor_db": -top_db if top_db is not None else -100.0, **frontend}
        self.reflect = frontend.get("pad_mode") == "reflect"  # musicnn's front end
        self._buf = np.zeros(self.n_fft // 2, dtype=np.float32)  # centre padding (reflect: set by the first push)
        self._tail = np.zeros(0, dtype=np.float32)  # the signal's last n_fft // 2 + 1 samples (reflect end)
        self.n_samples = 0
        self.n_frames = 0

    def _frames(self, buf: np.ndarray, n: int) -> np.ndarray:
        frames = np.lib.stride_tricks.as_strided(
            buf, shape=(n, self.n_fft), strides=(buf.strides[0] * self.hop, buf.strides[0]), writeable=False
        )
        out = np.empty((n, self.rows), dtype=np.float32)
        for s in range(0, n, 1024):
            # the one front end's kernel (mgr.dsp.frontend), on frames cut from the stream; huge sample
            # values overflow to inf here: refused by the caller, without warnings on stderr
            with np.errstate(over="ignore", invalid="ignore"):
                out[s : s + 1024] = frames_rows(frames[s : s + 1024], self.fe)
        self.n_frames += n
        return out

    def push(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        half = self.n_fft // 2
        if self.reflect and self.n_samples == 0 and len(y) > half:
            self._buf = np.ascontiguousarray(y[1 : half + 1][::-1])  # np.pad(mode="reflect")'s left side
        if self.reflect:
            self._tail = np.concatenate([self._tail, y])[-(half + 1):]
        self.n_samples += len(y)
        buf = np.concatenate([self._buf, y])
        n = 1 + (len(buf) - self.n_fft) // self.hop if len(buf) >= self.n_fft else 0
        if n <= 0:
            self._buf = buf
            return np.zeros((0, self.rows), np.float32)
        out = self._frames(buf, n)
        self._buf = buf[n * self.hop :].copy()
        return out

    def finish(self) -> np.ndarray:
        total = 1 + self.n_samples // self.hop
        half = self.n_fft // 2
        right = (self._tail[-half - 1 : -1][::-1] if self.reflect and self.n_samples > half
                 else np.zeros(half, np.float32))
        buf = np.concatenate([self._buf, right, np.zeros(self.n_fft, np.float32)])
        n = total - self.n_frames
        if n <= 0:
            return np.zeros((0, self.rows), np.float32)
        return self._frames(buf, n)


class EnergyTracker:
    """Mean square of the signal per ``hop`` samples (one float per spectrogram frame), pushed
    block by block: the RMS of the file and of any frame range, for silence detection."""

    def __init__(self, hop: int):
        self.hop = int(hop)
        self._rest = np.zeros(0, np.float64)
        self._ms: list[np.ndarray] = []
        self.sumsq, self.n = 0.0, 0

    def push(self, y: np.ndarray) -> None:
        y = np.asarray(y, np.float64)
        self.sumsq += float(np.dot(y, y))
        self.n += len(y)
        buf = np.concatenate([self._rest, y]) if len(self._rest) else y
        k = len(buf) // self.hop
        if k:
            self._ms.append(np.square(buf[: k * self.hop]).reshape(k, self.hop).mean(axis=1))
        self._rest = buf[k * self.hop :].copy()

    def per_frame(self) -> np.ndarray:
        tail = [np.array([np.mean(np.square(self._rest))])] if len(self._rest) else []
        return np.concatenate(self._ms + tail) if (self._ms or tail) else np.zeros(0)


def dbfs(mean_square: float) -> float:
    """RMS level in dB relative to full scale (1.0) of a mean square."""
    return 10.0 * math.log10(max(float(mean_square), 1e-30))


def is_silent(mean_square: float) -> bool:
    return dbfs(mean_square) < SILENCE_DBFS


def spectrogram_frames(path: Path, frontend: dict, block_s: float = BLOCK_S, *,
                       budget: _Budget | None = None, energy: EnergyTracker | None = None,
                       fe: StreamingFrontEnd | None = None) -> Iterator[np.ndarray]:
    """Stream a file's spectrogram as frames-major blocks ``(k, rows)`` (bounded memory).
    ``budget`` (duration and time limits) is charged for every decoded block; ``energy``
    (when given) sees every decoded sample; ``fe`` (when given) is the front end used (its
    ``n_samples`` tells how much was decoded)."""
    from mgr.audio.decode import stream_blocks

    fe = fe if fe is not None else StreamingFrontEnd(frontend)
    for block in stream_blocks(path, fe.sr, block_s):
        if budget is not None:
            budget.add(len(block), fe.sr)
        if not np.all(np.isfinite(block)):
            raise AudioError("decoded samples contain NaN or inf")
        if energy is not None:
            energy.push(block)
        out = fe.push(block)
        if len(out):
            _check_frames(out)
            yield out
    out = fe.finish()
    if len(out):
        _check_frames(out)
        yield out


def _check_frames(frames: np.ndarray) -> None:
    if not np.all(np.isfinite(frames)):  # e.g. float samples near 1e38: their power overflows
        raise AudioError("spectrogram is not finite (sample values out of range?)")


def file_spectrogram(path: str | os.PathLike, frontend: dict) -> np.ndarray:
    """The whole spectrogram ``(rows, frames)`` as predict computes it (tests, small files)."""
    blocks = list(spectrogram_frames(Path(path), frontend))
    return np.concatenate(blocks).T if blocks else np.zeros((int(frontend["n_mels"]), 0), np.float32)


# ------------------------------------------------------------------------------ windowing
class WindowStream:
    """Cut windows of ``length`` frames every ``hop`` frames from frames that arrive in blocks;
    the last window is end-aligned so the whole input is covered (as ``mgr.audio.decode.window_starts``).
    Keeps at most ``length + block`` frames."""

    def __init__(self, length: int, hop: int, rows: int):
        self.length, self.hop, self.rows = length, hop, rows
        self.buf = np.zeros((0, rows), np.float32)
        self.offset = 0  # absolute frame index of buf[0]
        self.next_start = 0
        self.last_end = 0  # end of the last emitted window
        self.starts: list[int] = []  # start frame of every window emitted, in order

    def push(self, frames: np.ndarray) -> list[np.ndarray]:
        self.buf = np.concatenate([self.buf, frames]) if len(self.buf) else frames
        out = []
        while self.next_start + self.length <= self.offset + len(self.buf):
            s = self.next_start - self.offset
            out.append(self.buf[s : s + self.length].copy())
            self.starts.append(self.next_start)
            self.last_end = self.next_start + self.length
            self.next_start += self.hop
        # keep only what a later (or the final end-aligned) window can need
        keep_from = min(self.next_start, self.offset + len(self.buf) - self.length)
        drop = max(0, keep_from - self.offset)
        if drop:
            self.buf = self.buf[drop:]
            self.offset += drop
        return out

    def finish(self, total: int, pad_value: float) -> list[np.ndarray]:
        if total < self.length:  # one window, padded at the end
            pad = np.full((self.length - len(self.buf), self.rows), pad_value, np.float32)
            self.starts.append(0)
            return [np.concatenate([self.buf, pad])]
        if self.last_end < total:
            s = total - self.length - self.offset
            self.starts.append(total - self.length)
            return [self.buf[s : s + self.length].copy()]
        return []


# --------------------------------------------------------------------------------- deep
class DeepPredictor(Predictor):
    kind = "deep"

    def __init__(self, model_dir: Path, card: dict, **kw: Any):
        super().__init__(**kw)
        self.model_dir, self.card = model_dir, card
        for key in ("frontend", "window_frames", "outputs"):
            if key not in card:
                raise ArtifactError(f"{model_dir / 'model.json'}: missing {key!r}")
        self.name = str(card.get("name", model_dir.name))
        self.labels = list(card["labels"])
        self.frontend = dict(card["frontend"])
        self.window_frames = int(card["window_frames"])
        self.outputs = list(card["outputs"])
        tb = card.get("tempo_bins") or {}
        self.tempo_centres = list(tb.get("centres", []))
        self.tempo_log = tb.get("kind") == "log"
        self.tag_vocab = list(card.get("tag_vocab") or [])
        self.hop_s = float(self.frontend.get("hop", self.frontend.get("hop_length"))) / float(self.frontend["sr"])
        self.window_s_model = self.window_frames * self.hop_s
        StreamingFrontEnd(self.frontend)  # validate the front end before loading anything
        if self.window_s is not None and int(round(self.window_s / self.hop_s)) < self.window_frames:
            raise UsageError(
                f"--window {self.window_s:g} s is shorter than the model's window ({self.window_s_model:.2f} s)"
            )
        self._load_model()

    def _load_model(self) -> None:
        from mgr.models import deep

        # the card, then model.onnx (sha256-checked) on onnxruntime: the very object evaluate scores
        self.model = deep.load(self.model_dir)
        self.runtime = "onnx"
        want = (int(self.frontend["n_mels"]), self.window_frames)
        if (self.model.n_mels, self.model.window_frames) != want:
            raise ArtifactError(f"{self.model_dir}: model input {self.model.input_shape} does not match the front end {want}")

    def _run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.predict_windows(X, batch_size=BATCH_WINDOWS)

    def predict_file(self, path: Path) -> Prediction:
        frames_total_hint, file_sr, _ = check_file(path, self.max_duration_s)
        budget = self._budget()
        duration = frames_total_hint / file_sr  # 0 when FFmpeg's container declares none
        if frames_total_hint and duration < MIN_DURATION_S:
            raise AudioError(f"too short ({duration:.2f} s; at least {MIN_DURATION_S} s needed)")
        warnings: list[str] = []
        L = self.window_frames
        seg_frames = L if self.window_s is None else max(1, int(round(self.window_s / self.hop_s)))
        seg_hop = max(1, int(round(seg_frames * (1.0 - self.overlap))))
        sub_hop = max(1, int(round(L * (1.0 - self.overlap))))
        rows = int(self.frontend["n_mels"])
        ws = WindowStream(seg_frames, seg_hop, rows)
        # per segment (in time order): genre probs (mean over its model windows), tempo-bin
        # probs and tag scores (means), its number of model windows
        seg_genre: list[np.ndarray] = []
        seg_tempo: list[np.ndarray] = []
        seg_tags: list[np.ndarray] = []
        seg_nwin: list[int] = []
        pad_value = float(self.frontend.get("floor_db", -100.0))
        total = 0

        def run_segments(segs: list[np.ndarray]) -> None:
            from mgr.audio.windows import window_starts

            if not segs:
                return
            wins, owner = [], []
            for j, seg in enumerate(segs):
                starts = window_starts(len(seg), L, sub_hop) if len(seg) > L else [0]
                wins.extend(seg[s : s + L].T for s in starts)
                owner.extend([j] * len(starts))
            X = np.stack(wins)  # all model windows of these segments in one batched run
            budget.check()
            out = self._run(X)
            owner_a = np.asarray(owner)
            use_tempo = "tempo" in out and self.tempo_centres
            for j in range(len(segs)):
                m = owner_a == j
                seg_nwin.append(int(m.sum()))
                if "genre" in out:
                    seg_genre.append(np.asarray(out["genre"], np.float64)[m].mean(axis=0))
                if use_tempo:
                    seg_tempo.append(np.asarray(out["tempo"], np.float64)[m].mean(axis=0))
                if "tags" in out:
                    seg_tags.append(np.asarray(out["tags"], np.float64)[m].mean(axis=0))

        onset = _OnsetTracker(self.frontend) if "tempo" not in self.outputs else None
        fe = StreamingFrontEnd(self.frontend)
        energy = EnergyTracker(fe.hop)
        pending: list[np.ndarray] = []
        for frames in spectrogram_frames(path, self.frontend, budget=budget, energy=energy, fe=fe):
            total += len(frames)
            if onset is not None:
                onset.push(frames)
            pending.extend(ws.push(frames))
            if len(pending) >= max(1, BATCH_WINDOWS // max(1, seg_frames // L)):
                run_segments(pending)
                pending = []
        decoded_s = fe.n_samples / fe.sr
        if decoded_s < MIN_DURATION_S:  # the header (an estimate for FFmpeg's formats) said more
            raise AudioError(f"too short ({decoded_s:.2f} s decoded; at least {MIN_DURATION_S} s needed)")
        if total < seg_frames:
            warnings.append(
                f"shorter than one window ({decoded_s:.2f} s < {seg_frames * self.hop_s:.2f} s): padded with silence"
            )
        pending.extend(ws.finish(total, pad_value))
        run_segments(pending)
        n_win = sum(seg_nwin)

        # silence: a segment whose RMS is below SILENCE_DBFS has no say; none left -> no answer
        ms = energy.per_frame()
        starts = ws.starts
        ends = [min(st + seg_frames, total) for st in starts]
        silent = [is_silent(float(ms[a:b].mean()) if b > a and len(ms[a:b]) else 0.0) for a, b in zip(starts, ends)]
        keep = [i for i, q in enumerate(silent) if not q]
        segments = self._segments(starts, ends, silent, seg_genre, seg_tempo, seg_tags, onset) if self.timeline else None
        if not keep:
            return self._silent_prediction(path, warnings, n_win, total * self.hop_s, segments)
        w = np.asarray([seg_nwin[i] for i in keep], np.float64)
        top: list[tuple[str, float]] = []
        if seg_genre:  # (a tagger has no genre head)
            top = self._top(self._combine(np.stack([seg_genre[i] for i in keep])))
        if seg_tempo:
            from mgr.models.deep import bpm_from_probs  # the one BPM read-out (evaluate uses it too)

            probs = np.average(np.stack([seg_tempo[i] for i in keep]), axis=0, weights=w)
            bpm = float(bpm_from_probs(probs, self.tempo_centres, log=self.tempo_log))
            tempo_src = "model"
        else:
            bpm = onset.tempo() if onset is not None else None
            tempo_src = "dsp"
        bpm, tempo_src = _finite_tempo(bpm, tempo_src, warnings)
        tags: list[tuple[str, float]] = []
        if seg_tags and self.tag_vocab:
            scores = np.average(np.stack([seg_tags[i] for i in keep]), axis=0, weights=w)
            tags, tag_top = self._tags(scores)
            if not seg_genre:  # a tagger: its top-k are its best tags, whatever the threshold
                top = tag_top
        genre, reason = self._confident(top) if seg_genre else (None, None)
        if reason:
            warnings.append(reason)
        return Prediction(str(path), genre, top, bpm, tempo_src, tags, warnings, n_win, total * self.hop_s,
                          reason, segments)

    def _tags(self, scores: np.ndarray) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """(tags at or above the threshold, the top-k tags) of mean tag scores."""
        if not np.all(np.isfinite(scores)):
            raise AudioError("model output is not finite (NaN/inf) for this file")
        order = np.argsort(-scores, kind="stable")
        tags = [(self.tag_vocab[i], round(float(scores[i]), 4)) for i in order if scores[i] >= self.tag_threshold]
        return tags, [(self.tag_vocab[i], round(float(scores[i]), 6)) for i in order[: self.top_k]]

    def _segments(self, starts, ends, silent, seg_genre, seg_tempo, seg_tags, onset) -> list[Segment]:
        """The ``--timeline``: one :class:`Segment` per segment the answer aggregates."""
        env = onset.envelope() if onset is not None else None
        out = []
        for i, (a, b) in enumerate(zip(starts, ends)):
            t0, t1 = round(a * self.hop_s, 3), round(max(b, a + 1) * self.hop_s, 3)
            if silent[i]:
                out.append(Segment(t0, t1, None, [], None, [], True, f"silence: no signal above {SILENCE_DBFS:g} dBFS"))
                continue
            top: list[tuple[str, float]] = []
            if seg_genre:
                top = self._top(seg_genre[i])
            if seg_tempo:
                from mgr.models.deep import bpm_from_probs

                bpm = float(bpm_from_probs(seg_tempo[i], self.tempo_centres, log=self.tempo_log))
            else:
                bpm = onset.tempo_between(env, a, b) if onset is not None else None
            bpm = bpm if bpm is not None and math.isfinite(bpm) and bpm > 0 else None
            tags: list[tuple[str, float]] = []
            if seg_tags and self.tag_vocab:
                tags, tag_top = self._tags(seg_tags[i])
                if not seg_genre:
                    top = tag_top
            genre, reason = self._confident(top) if seg_genre else (None, None)
            out.append(Segment(t0, t1, genre, top, None if bpm is None else round(bpm, 2), tags, False, reason))
        return out


def _finite_tempo(bpm: float | None, source: str, warnings: list[str]) -> tuple[float | None, str]:
    """A non-finite (or non-positive) tempo estimate becomes ``None`` with a warning saying why."""
    if bpm is None:
        return None, source
    if not math.isfinite(bpm) or bpm <= 0:
        warnings.append(f"tempo not estimated ({source} estimate was {bpm!r})")
        return None, "none"
    return float(bpm), source


class _OnsetTracker:
    """Bounded-memory onset envelope for the DSP tempo estimate of deep models without a tempo head.

    The envelope is computed from the streamed dB mel frames of the model's own front end as
    ``librosa.onset.onset_strength`` does (mean over bands of the positive first difference,
    centred by ``1 + n_fft // (2 hop)`` leading zeros, trimmed to the number of frames); with
    librosa's default front end (22050 Hz, n_fft 2048, hop 512, 128 mels) that is librosa's own
    envelope up to its max-relative ``top_db`` clipping. Only one float per frame is kept.
    """

    def __init__(self, frontend: dict):
        self.fe = frontend
        self.hop = int(frontend.get("hop", frontend.get("hop_length")))
        self.sr = int(frontend["sr"])
        self.prev: np.ndarray | None = None
        self.env: list[np.ndarray] = []
        self.usable = frontend.get("kind", "logmel") == "logmel"

    def push(self, frames: np.ndarray) -> None:
        if not self.usable:
            return
        if self.prev is not None:
            frames_ext = np.concatenate([self.prev[None], frames])
        else:
            frames_ext = frames
        if len(frames_ext) >= 2:
            d = np.maximum(0.0, np.diff(frames_ext, axis=0)).mean(axis=1)
            self.env.append(d.astype(np.float32))
        self.prev = frames[-1].copy()

    def envelope(self) -> np.ndarray | None:
        if not self.usable or not self.env:
            return None
        env = np.concatenate(self.env)
        # librosa pads lag + n_fft // (2 * hop) frames at the front so the envelope is centred
        pad = 1 + int(self.fe["n_fft"]) // (2 * self.hop)
        n_frames = len(env) + 1
        return np.concatenate([np.zeros(pad, np.float32), env])[:n_frames]

    def tempo(self) -> float | None:
        env = self.envelope()
        return None if env is None else dsp_tempo_from_envelope(env, self.sr, self.hop)

    def tempo_between(self, env: np.ndarray | None, start: int, end: int) -> float | None:
        """The DSP tempo of frames ``[start, end)`` of ``envelope()`` (a ``--timeline`` segment)."""
        if env is None or end - start < 4:
            return None
        return dsp_tempo_from_envelope(env[start:end], self.sr, self.hop)


#: ``librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=hop)`` in NumPy (equality with
#: librosa tested); shared with the ``gtzan57`` features so there is one implementation.
dsp_tempo_from_envelope = _fastdsp.tempo_from_envelope


# ---------------------------------------------------------------------------- classical
class ClassicalPredictor(Predictor):
    kind = "classical"

    def __init__(self, model_dir: Path, card: dict, **kw: Any):
        super().__init__(**kw)
        from mgr.models import classical

        self.model_dir, self.card = model_dir, card
        # the card, then model.onnx (sha256-checked) on onnxruntime: the very object evaluate
        # scores; neither scikit-learn nor XGBoost is imported
        self.art = classical.load(model_dir)
        self.runtime = "onnx"
        ccard = self.art.card
        self.name = str(ccard.get("name", model_dir.name))
        self.labels = list(ccard["labels"])
        self.feature_set = ccard.get("feature_set") or "gtzan57"
        self.columns = list(ccard["feature_columns"])
        audio = card.get("audio") or {}
        self.sr = int(audio.get("sample_rate", audio.get("sr", 22050)))
        self.audio = audio

    def predict_file(self, path: Path) -> Prediction:
        from mgr.audio.decode import load_audio
        from mgr.audio.windows import window_starts, windows
        from mgr.features.tables import extract_features

        frames, file_sr, channels = check_file(path, self.max_duration_s)
        budget = self._budget()
        duration = frames / file_sr  # 0 when FFmpeg's container declares none
        if frames and duration < MIN_DURATION_S:
            raise AudioError(f"too short ({duration:.2f} s; at least {MIN_DURATION_S} s needed)")
        offset = float(self.audio.get("offset_s", 0.0) or 0.0)
        crop = self.audio.get("duration_s")
        pad = bool(self.audio.get("pad", True))
        seg_s = self.window_s
        if seg_s is None and crop is None and (
            not frames or duration > CLASSICAL_WHOLE_MAX_S or frames * channels > CLASSICAL_WHOLE_MAX_SAMPLES
        ):  # a long (or very wide, or undeclared) file: streamed segments the size of a training clip
            seg_s = CLASSICAL_SEGMENT_S
        warnings: list[str] = []
        # (start sample, segment, samples of real signal in it)
        if seg_s is None:  # the whole (or card-cropped) file, as in training
            if crop is None and not offset and frames and _decoder(path) == "av":
                y = _decode_whole(path, self.sr, budget, duration)  # bounded by what the header declared
            else:
                y = load_audio(path, sr=self.sr, offset_s=offset, duration_s=crop, pad=pad)
            real = len(y) if crop is None else min(len(y), max(0, int(round((duration - offset) * self.sr))))
            segs: Iterable[tuple[int, np.ndarray, int]] = [(0, y, real)]
        else:
            n = int(round(seg_s * self.sr))
            hop = max(1, int(round(n * (1.0 - self.overlap))))
            if frames and duration < seg_s:
                warnings.append(f"shorter than one window ({duration:.2f} s < {seg_s:g} s): padded with silence")
            if crop is not None or offset:
                y = load_audio(path, sr=self.sr, offset_s=offset, duration_s=crop, pad=pad)
                st = window_starts(len(y), n, hop) if len(y) > n else [0]
                segs = ((int(a), w, min(n, len(y) - int(a))) for a, w in zip(st, windows(y, n, hop=hop)))
            else:  # streamed: memory is bounded by one segment whatever the file length
                segs = stream_segments(path, self.sr, n, hop, budget=budget, with_starts=True)
        rows, tempos, starts, ends, silent = [], [], [], [], []
        decoded = 0
        for start, seg, real in segs:
            budget.check()
            starts.append(start)
            ends.append(start + max(real, 1))
            decoded = max(decoded, start + real)
            part = np.asarray(seg[:real], np.float64)
            q = is_silent(float(np.mean(np.square(part))) if len(part) else 0.0)
            silent.append(q)
            if q:  # no features for silence (they are not finite there): no say in the answer
                continue
            feats = extract_features(seg, self.sr, self.feature_set)
            rows.append([feats[c] for c in self.columns])
            tempos.append(float(feats["tempo"]) if "tempo" in feats else _fastdsp.tempo(seg, self.sr))
        if not frames:
            duration = decoded / self.sr
            if duration < MIN_DURATION_S:
                raise AudioError(f"too short ({duration:.2f} s decoded; at least {MIN_DURATION_S} s needed)")
        seg_probs = np.zeros((0, len(self.labels)))
        if rows:
            X = np.asarray(rows, dtype=np.float64)
            if not np.all(np.isfinite(X)):
                raise AudioError("features are not finite (silent or corrupt audio?)")
            seg_probs = np.asarray(self.art.predict_proba(X), np.float64)
        segments = None
        if self.timeline:
            segments, k = [], 0
            for a, b, q in zip(starts, ends, silent):
                t0, t1 = round(offset + a / self.sr, 3), round(offset + b / self.sr, 3)
                if q:
                    segments.append(Segment(t0, t1, None, [], None, [], True,
                                            f"silence: no signal above {SILENCE_DBFS:g} dBFS"))
                    continue
                top_i = self._top(seg_probs[k])
                g, r = self._confident(top_i)
                t = tempos[k]
                segments.append(Segment(t0, t1, g, top_i, round(t, 2) if t and math.isfinite(t) and t > 0 else None,
                                        [], False, r))
                k += 1
        if not rows:
            return self._silent_prediction(path, warnings, len(starts), duration, segments)
        probs = self._combine(seg_probs)
        top = self._top(probs)
        # one segment: its tempo (= librosa.feature.tempo of the clip); several: their median
        tempo_values = [t for t in tempos if t and np.isfinite(t)]
        bpm = float(np.median(tempo_values)) if tempo_values else None
        bpm, tempo_src = _finite_tempo(bpm, "dsp", warnings)
        genre, reason = self._confident(top)
        if reason:
            warnings.append(reason)
        return Prediction(str(path), genre, top, bpm, tempo_src, [], warnings, len(starts), duration, reason, segments)


def _decoder(path: Path) -> str:
    from mgr.audio.decode import _is_av

    return "av" if _is_av(path) else "sf"


def _decode_whole(path: Path, sr: int, budget: _Budget, declared_s: float) -> np.ndarray:
    """A whole file FFmpeg decodes, streamed into one array: refused when it decodes to far more
    than its header declared (so "whole file" stays bounded by CLASSICAL_WHOLE_MAX_S)."""
    from mgr.audio.decode import stream_blocks

    cap = 2 * max(declared_s, 1.0) + 10.0
    parts, n = [], 0
    for block in stream_blocks(path, sr, block_s=10.0):
        budget.add(len(block), sr)
        n += len(block)
        if n > cap * sr:
            raise AudioError(f"decodes to more than {cap:.0f} s although its header declares {declared_s:.1f} s")
        parts.append(block)
    if not parts:
        raise AudioError("no audio frames")
    y = np.concatenate(parts)
    if not np.all(np.isfinite(y)):
        raise AudioError("decoded samples contain NaN or inf")
    return y


#: classical models take a file whole (as their training clips) up to this length; a longer file
#: is classified as overlapping segments of CLASSICAL_SEGMENT_S, streamed, probabilities combined
#: by ``--aggregate``, tempo = median of the segments' tempos.
CLASSICAL_WHOLE_MAX_S = 60.0
CLASSICAL_SEGMENT_S = 30.0
#: ... and up to this many samples (frames x channels: 60 s of 192 kHz stereo), so a file with
#: many channels or a high rate is streamed too rather than decoded whole
CLASSICAL_WHOLE_MAX_SAMPLES = 60 * 192_000 * 2


def stream_segments(path: str | os.PathLike, sr: int, n: int, hop: int, block_s: float = 10.0, *,
                    budget: _Budget | None = None, with_starts: bool = False) -> Iterator[Any]:
    """Segments of ``n`` samples every ``hop`` samples of a file decoded as a stream.

    Same cover as :func:`mgr.audio.decode.windows` (the last segment is aligned to the end; a file
    shorter than ``n`` gives one zero-padded segment), but only about one segment plus one
    decoded block is held in memory at a time. ``with_starts``: yield ``(start, segment,
    real)`` instead, ``real`` the number of samples of signal in it (less than ``n`` only
    for the zero-padded segment of a short file).
    """
    from mgr.audio.decode import stream_blocks

    buf = np.zeros(0, np.float32)
    base = nxt = last_end = 0  # absolute sample index of buf[0], of the next segment start, of the last end
    for block in stream_blocks(path, sr, block_s=block_s):
        if budget is not None:
            budget.add(len(block), sr)
        buf = np.concatenate([buf, np.asarray(block, np.float32)])
        while nxt + n <= base + len(buf):
            i = nxt - base
            yield (nxt, buf[i : i + n], n) if with_starts else buf[i : i + n]
            last_end, nxt = nxt + n, nxt + hop
        keep_from = min(nxt, base + len(buf) - n)  # what a later or the end-aligned segment needs
        if keep_from > base:
            buf, base = buf[keep_from - base :], keep_from
    total = base + len(buf)
    if total < n:
        seg = np.concatenate([buf, np.zeros(n - len(buf), np.float32)])
        yield (0, seg, total) if with_starts else seg
    elif last_end < total:
        yield (total - n, buf[len(buf) - n :], n) if with_starts else buf[len(buf) - n :]


class TaggerPredictor(DeepPredictor):
    """A built-in pretrained tagger (``musicnn_msd`` / ``musicnn_mtt``, :mod:`mgr.pretrained.builtin`):
    the same streamed front end and windows as a deep model, answering scored tags instead of a
    genre. Its ONNX model takes ``(n, 187, 96)`` frames-by-mels patches; outputs ``taggram``."""

    kind = "pretrained"

    def __init__(self, model_dir: Path, card: dict, **kw: Any):
        card = dict(card, outputs=["tags"], tag_vocab=list(card.get("tag_vocab") or card["labels"]))
        super().__init__(model_dir, card, **kw)

    def _load_model(self) -> None:
        from mgr.inference.runtime import OnnxModel

        file = self.card.get("onnx_file")
        if not file or not self.card.get("onnx_sha256"):
            raise ArtifactError(f"{self.model_dir / 'model.json'} names no ONNX model (rebuild it)")
        self.model = OnnxModel(self.model_dir / file, sha256=self.card["onnx_sha256"])
        self.runtime = "onnx"

    def _run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        out = self.model.run(np.ascontiguousarray(X.transpose(0, 2, 1)), outputs=["taggram"])  # -> frames x mels
        return {"tags": out["taggram"]}


def load_predictor(model_dir: str | os.PathLike, **kw: Any) -> Predictor:
    """Check the card and load the artifact (refusing tampered/foreign ones before their code runs)."""
    model_dir = Path(model_dir)
    tempo_kw = {k: kw.pop(k) for k in ("tempo", "tempo_dir") if k in kw}  # --tempo: mgr.tempo.estimate
    card = read_card(model_dir)
    if card["kind"] == "pretrained":
        pred: Predictor = TaggerPredictor(model_dir, card, **kw)
    elif card["kind"] == "deep":
        pred = DeepPredictor(model_dir, card, **kw)
    else:
        pred = ClassicalPredictor(model_dir, card, **kw)
    pred.trained_on = training_data(card, model_dir)
    pred.model_dir, pred.load_kwargs = model_dir, dict(kw, **tempo_kw)  # what a worker process loads again
    if tempo_kw:
        from mgr.tempo.estimate import TempoChoice

        pred.tempo = TempoChoice(tempo_kw.get("tempo"), tempo_kw.get("tempo_dir") or Path("models") / "tempo")
    return pred


def training_data(card: dict, model_dir: str | os.PathLike | None = None) -> dict | None:
    """What a model was trained on: ``{"source", "synthetic", "from"}`` or ``None`` (unknown).

    Read from the card's ``trained_on`` record (``{"source": "synthetic" | "gtzan" | "fma" |
    "folder", "synthetic": bool, ...}``, written by training); a card without one (older
    artifacts, or classical cards whose ``trained_on`` is only a sentence) falls back to the
    ``data.source`` of the ``params.yaml`` of the project holding ``models/<name>/``
    (``"from": "params.yaml"``). A built-in pretrained tagger was trained on real music (its
    card's ``pretrained`` provenance)."""
    if card.get("kind") == "pretrained":
        return {"source": "pretrained", "synthetic": False, "from": "card"}
    rec = card.get("trained_on")
    if isinstance(rec, dict) and (rec.get("source") or "synthetic" in rec):
        src = str(rec.get("source") or "")
        synth = rec.get("synthetic")
        return {"source": src or None, "synthetic": bool(synth) if isinstance(synth, bool) else src == "synthetic",
                "from": "card"}
    if model_dir is None:
        return None
    d = Path(model_dir)
    try:
        d = d.resolve()
    except OSError:
        return None
    if d.parent.name != "models":
        return None
    params = d.parent.parent / "params.yaml"
    try:
        import yaml

        data = yaml.safe_load(params.read_text()) if params.is_file() else None
    except Exception:  # unreadable / not YAML: unknown
        return None
    src = (data or {}).get("data", {}).get("source") if isinstance(data, dict) and isinstance(data.get("data"), dict) else None
    if not isinstance(src, str):
        return None
    return {"source": src, "synthetic": src == "synthetic", "from": "params.yaml"}


def synthetic_warning(predictor: Predictor) -> str | None:
    """One line for stderr when the model was trained on the synthetic set (else ``None``)."""
    rec = predictor.trained_on
    if not rec or not rec.get("synthetic"):
        return None
    how = "" if rec.get("from") == "card" else " (per params.yaml data.source; its card does not say)"
    return (f"model {predictor.name} was trained on the synthetic set{how}: it has never heard real recordings, "
            "so its genres for real music are not meaningful; use the pretrained tagger (--model musicnn-msd), "
            "a classifier on pretrained embeddings (ml.embedding_models in params.yaml) trained on real data, "
            "or train on real music (data.source: gtzan, fma or folder)")


PARALLEL_MIN_FILES = 8  # fewer files than this are predicted in-process (a worker's start costs more)


def _predict_one(predictor: Predictor, item: Path | InputFailure) -> Prediction | InputFailure:
    """One input -> its prediction, or an :class:`InputFailure` with a one-line reason.

    A non-finite model output (:class:`mgr.inference.runtime.InferenceError`) fails that file
    only; any other model problem (a :class:`UserError` such as :class:`ArtifactError`) is raised."""
    from mgr.inference.runtime import InferenceError

    if isinstance(item, InputFailure):
        res: Prediction | InputFailure = item
    else:
        try:
            res = predictor.predict_file(item)
            if getattr(predictor, "tempo", None) is not None:  # --tempo: mgr.tempo.estimate
                res = predictor.tempo.apply(res, item)
        except AudioError as e:
            res = InputFailure(str(item), _strip_prefix(str(e), item))
        except InferenceError as e:
            res = InputFailure(str(item), f"model output unusable ({e})")
        except UserError:
            raise
        except MemoryError:
            res = InputFailure(str(item), "out of memory")
        except Exception as e:  # a decoder bug on one file must not stop the others
            res = InputFailure(str(item), f"cannot process ({type(e).__name__}: {_short(str(e))})")
    if isinstance(res, InputFailure):  # the reason on one printable line, whatever it quotes
        res.error = display_text(res.error)
    return res


def predict_many(
    predictor: Predictor, inputs: Iterable[Path | InputFailure], on_result: Callable[[Any], None] | None = None,
    *, workers: int = 1,
) -> list[Prediction | InputFailure]:
    """Predict every input; results reach ``on_result`` and the returned list in input order.

    With ``workers > 1`` and at least :data:`PARALLEL_MIN_FILES` files, decoding, the front end
    and the model run in that many fresh worker processes (each loads the same artifact,
    hash-checked, with one onnxruntime and one BLAS thread; at most ``2 * workers`` files in
    flight; workers die with this process); the answers are the same as in-process."""
    items = list(inputs)
    n_files = sum(1 for i in items if not isinstance(i, InputFailure))
    if workers > 1 and n_files >= PARALLEL_MIN_FILES and getattr(predictor, "model_dir", None) is not None:
        return _predict_parallel(predictor, items, on_result, min(workers, n_files))
    results: list[Prediction | InputFailure] = []
    for item in items:
        res = _predict_one(predictor, item)
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


_WORKER: dict[str, Any] = {}


def _worker_init(model_dir: str, kw: dict) -> None:
    _WORKER["predictor"] = load_predictor(model_dir, **kw)


def _worker_predict(item: Path | InputFailure) -> tuple[str, Any]:
    try:
        return "ok", _predict_one(_WORKER["predictor"], item)
    except UserError as e:  # a model problem: the parent stops the run with the same one line
        return "user_error", (type(e).__name__, str(e))


def _predict_parallel(predictor: Predictor, items: list, on_result: Callable[[Any], None] | None,
                      workers: int) -> list[Prediction | InputFailure]:
    import multiprocessing as mp

    # fresh interpreters (spawn): a fork would inherit the parent's BLAS/OpenMP/onnxruntime thread
    # state, which can deadlock the child; one thread of each per worker (the workers are the
    # parallelism), set in the environment they start with
    ctx = mp.get_context("spawn")
    one = {k: "1" for k in ("MGR_ONNX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    saved = {k: os.environ.get(k) for k in one}
    os.environ.update(one)
    try:
        return _run_pool(predictor, items, on_result, workers, ctx)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_pool(predictor: Predictor, items: list, on_result: Callable[[Any], None] | None, workers: int,
              ctx: Any) -> list[Prediction | InputFailure]:
    from concurrent.futures import FIRST_COMPLETED, wait

    from mgr.io import process_pool

    results: list[Any] = [None] * len(items)
    done_flags = [False] * len(items)
    next_out = 0

    def flush() -> None:
        nonlocal next_out
        while next_out < len(items) and done_flags[next_out]:
            if on_result is not None:
                on_result(results[next_out])
            next_out += 1

    with process_pool(workers, initializer=_worker_init, initargs=(str(predictor.model_dir), predictor.load_kwargs),
                      mp_context=ctx) as ex:
        pending: dict[Any, int] = {}
        todo = iter(range(len(items)))

        def submit_more() -> None:
            while len(pending) < 2 * workers:
                i = next(todo, None)
                if i is None:
                    return
                if isinstance(items[i], InputFailure):
                    results[i], done_flags[i] = _predict_one(predictor, items[i]), True
                    continue
                pending[ex.submit(_worker_predict, items[i])] = i

        submit_more()
        flush()
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                status, value = fut.result()
                if status == "user_error":
                    for f in pending:
                        f.cancel()
                    cls = {c.__name__: c for c in (ArtifactError, AudioError, UsageError)}.get(value[0], UserError)
                    raise cls(value[1])
                results[i], done_flags[i] = value, True
            submit_more()
            flush()
    flush()
    return results


def _strip_prefix(msg: str, path: Path) -> str:
    for pre in (f"audio: {path}: ", f"{path}: "):
        if msg.startswith(pre):
            return msg[len(pre) :]
    return msg


# ------------------------------------------------------------------------------ output
# Paths are held as Python holds file names: ``os.fsdecode`` of the bytes, a byte that is not
# UTF-8 kept as a lone surrogate (U+DC80..U+DCFF). Output never prints those surrogates:
#  * JSON / CSV ``path``: the name, each undecodable byte written as the four characters
#    ``\xNN``; then ``path_bytes_b64`` holds the exact bytes (base64), only for such names.
#  * error / warning lines and the table (:func:`display_text`): also every non-printable
#    character (newline, tab, escape, ...) as ``\n`` ``\t`` ``\xNN`` ``\uNNNN``, so one
#    problem is always one line.
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def undecodable_as_hex(text: str) -> str:
    r"""``text`` with each undecodable file-name byte (a lone surrogate from ``os.fsdecode``)
    written as ``\xNN``; any other lone surrogate as ``\udNNN``. Valid UTF-8 is unchanged."""
    if not _has_surrogates(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def display_text(text: str) -> str:
    r"""``text`` on one printable line: undecodable bytes as ``\xNN`` and every non-printable
    character (``str.isprintable``: newline, tab, escape, DEL, C1 controls, line separators, ...)
    as ``\n``, ``\r``, ``\t``, ``\xNN``, ``\uNNNN`` or ``\UNNNNNNNN``."""
    text = undecodable_as_hex(str(text))
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def display_path(path: str | os.PathLike) -> str:
    """A path for an error / warning line or the table (:func:`display_text`)."""
    return display_text(os.fsdecode(path))


def path_fields(path: str | os.PathLike) -> dict[str, str]:
    r"""``{"path": ...}`` for JSON / CSV, plus ``"path_bytes_b64"`` (the exact name bytes) when
    the name is not valid UTF-8 (its ``path`` then shows those bytes as ``\xNN``)."""
    text = os.fsdecode(path)
    if not _has_surrogates(text):
        return {"path": text}
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return {"path": undecodable_as_hex(text), "path_bytes_b64": base64.b64encode(raw).decode("ascii")}


def _strict(obj: Any) -> Any:
    r"""``obj`` made strict-JSON-safe: non-finite floats -> ``None``, lone surrogates -> ``\xNN``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return undecodable_as_hex(obj)
    if isinstance(obj, dict):
        return {_strict(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.generic):
        return _strict(obj.item())
    return obj


def strict_json(obj: Any) -> str:
    """One line of strict JSON (RFC 8259: no NaN/Infinity, no lone surrogates; ASCII)."""
    return json.dumps(_strict(obj), allow_nan=False)


def to_json_line(res: Prediction | InputFailure) -> str:
    if isinstance(res, InputFailure):
        return strict_json({**path_fields(res.path), "error": res.error})
    obj: dict[str, Any] = {
        **path_fields(res.path),
        "genre": res.genre,
        "top_k": [{"label": lab, "prob": p} for lab, p in res.top_k],
        "tempo_bpm": None if res.tempo_bpm is None else round(float(res.tempo_bpm), 2),
        "tags": [{"label": t, "score": s} for t, s in res.tags],
    }
    if res.tempo_source == "none":  # the estimate was not finite: say why it is null
        obj["tempo_error"] = next((w for w in res.warnings if w.startswith("tempo not estimated")),
                                  "tempo not estimated")
    if res.tempo_estimator:  # --tempo (mgr.tempo.estimate)
        obj.update(tempo_estimator=res.tempo_estimator, tempo_confidence=res.tempo_confidence)
    if res.reason:  # why genre is null: silence, --min-confidence
        obj["reason"] = res.reason
    if res.segments is not None:  # --timeline
        obj["segments"] = [_segment_obj(sg) for sg in res.segments]
    return strict_json(obj)


def _segment_obj(sg: Segment) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "start_s": sg.start_s, "end_s": sg.end_s, "genre": sg.genre,
        "top_k": [{"label": lab, "prob": p} for lab, p in sg.top_k],
        "tempo_bpm": sg.tempo_bpm,
        "tags": [{"label": t, "score": v} for t, v in sg.tags],
        "silent": sg.silent,
    }
    if sg.reason:
        obj["reason"] = sg.reason
    return obj


CSV_HEADER = ["path", "genre", "prob", "top_k", "tempo_bpm", "tags", "error", "path_bytes_b64", "reason"]
#: ``--timeline --format csv``: the file's row (start_s/end_s empty), then one row per segment
CSV_TIMELINE_HEADER = ["path", "start_s", "end_s", "genre", "prob", "top_k", "tempo_bpm", "tags", "silent", "error",
                       "path_bytes_b64", "reason"]


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if v is not None and math.isfinite(v) else ""


def _csv_cells(genre, top_k, tempo, tags) -> list[str]:
    return [
        genre or "",
        _num(top_k[0][1], ".4f") if top_k else "",
        ";".join(f"{lab}:{_num(p, '.4f')}" for lab, p in top_k),
        _num(tempo, ".1f"),
        "|".join(f"{t}:{_num(s, '.4f')}" for t, s in tags),
    ]


def csv_rows(res: Prediction | InputFailure) -> list[str]:
    """The row of :data:`CSV_HEADER` for one input."""
    pf = path_fields(res.path)
    if isinstance(res, InputFailure):
        row = [pf["path"], "", "", "", "", "", res.error]
        reason = ""
    else:
        row = [pf["path"], *_csv_cells(res.genre, res.top_k, res.tempo_bpm, res.tags), ""]
        reason = res.reason or ""
    return [undecodable_as_hex(str(c)) for c in row] + [pf.get("path_bytes_b64", ""), display_text(reason)]


def csv_timeline_rows(res: Prediction | InputFailure) -> list[list[str]]:
    """Rows of :data:`CSV_TIMELINE_HEADER`: the file's (empty start_s/end_s), then one per segment."""
    pf = path_fields(res.path)
    p, b64 = undecodable_as_hex(pf["path"]), pf.get("path_bytes_b64", "")
    if isinstance(res, InputFailure):
        return [[p, "", "", "", "", "", "", "", "", undecodable_as_hex(res.error), b64, ""]]
    rows = [[p, "", "", *_csv_cells(res.genre, res.top_k, res.tempo_bpm, res.tags), "", "", b64,
             display_text(res.reason or "")]]
    for sg in res.segments or []:
        rows.append([p, f"{sg.start_s:.3f}", f"{sg.end_s:.3f}", *_csv_cells(sg.genre, sg.top_k, sg.tempo_bpm, sg.tags),
                     "1" if sg.silent else "0", "", b64, display_text(sg.reason or "")])
    return rows


# ------------------------------------------------------------------------------ models
def list_models(root: str | os.PathLike = ".") -> list[dict]:
    """One record per ``models/<name>/model.json``: name, kind, labels, created, test metrics
    (from ``metrics/<name>.json`` or the evaluate outputs when present) and any card problem."""
    root = Path(root)
    out = []
    models = root / "models"
    if not models.is_dir():
        return out
    for d in sorted(models.iterdir()):
        if not d.is_dir() or (d / "card.json").is_file():  # card.json: models/tempo, the tempo estimator
            continue
        rec: dict[str, Any] = {"name": d.name, "path": str(d)}
        try:
            card = read_card(d)
        except ArtifactError as e:
            rec["error"] = str(e)
            out.append(rec)
            continue
        rec.update({
            "kind": card["kind"],
            "labels": card["labels"],
            "created": card.get("created"),
            "detail": card.get("feature_set") if card["kind"] == "classical" else
            f"{card.get('window_s', '?')} s window, outputs {','.join(card.get('outputs', []))}",
        })
        rec["test"] = _test_metrics(root, d.name)
        out.append(rec)
    return out


def builtin_models() -> list[dict]:
    """The built-in pretrained taggers (usable with no training run): name, vocabulary, source."""
    from mgr.pretrained import musicnn
    from mgr.pretrained.builtin import BUILTIN

    recs = []
    for name, backbone in BUILTIN.items():
        recs.append({
            "name": name.replace("_", "-"),
            "kind": "pretrained",
            "labels": musicnn.tag_vocab(backbone),
            "created": None,
            "detail": f"musicnn {backbone} (Pons & Serra 2019, ISC): {len(musicnn.tag_vocab(backbone))} tags, "
                      f"3 s patches of its 16 kHz front end",
            "test": None,
        })
    return recs


def _test_metrics(root: Path, name: str) -> dict | None:
    for p in (root / "metrics" / f"{name}.json", root / "metrics" / "evaluate" / f"{name}.json"):
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (ValueError, RecursionError, OSError):
                continue
            flat = {}
            acc = _acc_of(data)
            if acc is not None and math.isfinite(acc):  # `mgr models --json` stays strict JSON
                flat["accuracy"] = acc
            for key in ("macro_f1", "balanced_accuracy"):
                v = _find_key(data, key)
                if v is not None and math.isfinite(v):
                    flat[key] = v
            return flat or None
    return None


def _find_key(obj: Any, key: str, depth: int = 0) -> float | None:
    if depth > 3 or not isinstance(obj, dict):
        return None
    if isinstance(obj.get(key), (int, float)):
        return float(obj[key])
    for v in obj.values():
        r = _find_key(v, key, depth + 1)
        if r is not None:
            return r
    return None
