"""The streaming side of ``mgr predict``: a long file is decoded block by block and never held
whole.

* :class:`StreamingFrontEnd`: the card's log-mel front end applied incrementally (frames equal
  :func:`mgr.dsp.frontend.compute_spectrogram` of the whole signal); :func:`spectrogram_frames`.
* :class:`WindowStream`: model windows cut from frames as they arrive.
* :class:`EnergyTracker` / :func:`is_silent`: per-frame energy for silence detection.
* :class:`_OnsetTracker`: the onset envelope of the streamed frames and its DSP tempo.
* :func:`stream_segments`: fixed-length sample segments of a streamed file (classical models).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import _is_av, stream_blocks
from mgr.dsp import kernels as _fastdsp
from mgr.dsp.frontend import frames_rows
from mgr.errors import ArtifactError, AudioError
from mgr.inference.inputs import SILENCE_DBFS, _Budget

BLOCK_S = 20.0  # decode block length for streaming (seconds)


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
                       fe: StreamingFrontEnd | None = None, gate: Any = None) -> Iterator[np.ndarray]:
    """Stream a file's spectrogram as frames-major blocks ``(k, rows)`` (bounded memory).
    ``budget`` (duration and time limits) is charged for every decoded block; ``energy`` and
    ``gate`` (a :class:`mgr.inference.gate.GateAnalyzer`; when given) see every decoded sample; ``fe`` (when given) is the front end used (its
    ``n_samples`` tells how much was decoded)."""
    fe = fe if fe is not None else StreamingFrontEnd(frontend)
    for block in stream_blocks(path, fe.sr, block_s):
        if budget is not None:
            budget.add(len(block), fe.sr)
        if not np.all(np.isfinite(block)):
            raise AudioError("decoded samples contain NaN or inf")
        if energy is not None:
            energy.push(block)
        if gate is not None:
            gate.push(block)
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


def _decoder(path: Path) -> str:
    return "av" if _is_av(path) else "sf"


def _decode_whole(path: Path, sr: int, budget: _Budget, declared_s: float) -> np.ndarray:
    """A whole file FFmpeg decodes, streamed into one array: refused when it decodes to far more
    than its header declared (so "whole file" stays bounded by CLASSICAL_WHOLE_MAX_S)."""
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


def stream_segments(path: str | os.PathLike, sr: int, n: int, hop: int, block_s: float = 10.0, *,
                    budget: _Budget | None = None, with_starts: bool = False) -> Iterator[Any]:
    """Segments of ``n`` samples every ``hop`` samples of a file decoded as a stream.

    Same cover as :func:`mgr.audio.decode.windows` (the last segment is aligned to the end; a file
    shorter than ``n`` gives one zero-padded segment), but only about one segment plus one
    decoded block is held in memory at a time. ``with_starts``: yield ``(start, segment,
    real)`` instead, ``real`` the number of samples of signal in it (less than ``n`` only
    for the zero-padded segment of a short file).
    """
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

