"""Probe audio files: decode each one fully, measure duration, sample rate and channels.

Used by every dataset source. A file that cannot be opened, does not decode to the end,
holds no samples, or is shorter than the minimum duration gets a one-line reason instead.
Anything that is not a regular file (a directory, FIFO, device or socket) is refused without
being opened (reading a FIFO would block, a device could be endless). While decoding, the
probe also computes the track's fingerprints (:mod:`mgr.data.fingerprint`), so duplicate
detection costs no second decode.
Probing runs in a :class:`~concurrent.futures.ProcessPoolExecutor`; results come back in
input order while the pool streams through the files.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mgr.data.fingerprint import Fingerprinter
from mgr.io import process_pool  # workers die with the fetch, even on kill -9

BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class ProbeResult:
    path: str
    ok: bool
    duration_s: float = float("nan")
    sample_rate: int = 0
    channels: int = 0
    reason: str = ""
    fingerprint: str = ""  # exact: hash of the decoded samples (see mgr.data.fingerprint)
    near_fingerprint: str = ""  # coarse spectral key ("" when the envelope is flat)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    text = msg[0] if msg else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def probe_file(path: str | os.PathLike, min_duration_s: float = 0.0) -> ProbeResult:
    """Decode ``path`` completely with soundfile and report what it holds."""
    import soundfile as sf

    p = str(path)
    kind = file_kind(p)
    if kind == "missing":
        return ProbeResult(p, False, reason="file not found")
    if kind.startswith("unreadable"):
        return ProbeResult(p, False, reason=f"cannot access ({kind.split(': ', 1)[-1]})")
    if kind != "file":
        return ProbeResult(p, False, reason=f"not a regular file ({kind}): not read")
    if os.path.getsize(p) == 0:
        return ProbeResult(p, False, reason="empty file (0 bytes)")
    fp = None
    try:
        with sf.SoundFile(p) as f:
            sr, ch = int(f.samplerate), int(f.channels)
            if sr > 0:
                fp = Fingerprinter(sr, ch, int(f.frames) if f.frames else None)
            frames = 0
            finite = True
            while True:
                block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                frames += block.shape[0]
                if finite and not np.isfinite(block).all():
                    finite = False
                if finite and fp is not None:
                    fp.update(block)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a reason, never a crash
        # name the file, not the (possibly temporary) directory it was probed in
        msg = _one_line(e).replace(p, os.path.basename(p))
        return ProbeResult(p, False, reason=f"does not decode ({msg})")
    if sr <= 0:
        return ProbeResult(p, False, reason=f"invalid sample rate {sr}")
    if frames == 0:
        return ProbeResult(p, False, sample_rate=sr, channels=ch, duration_s=0.0, reason="no audio samples")
    if not finite:
        return ProbeResult(p, False, sample_rate=sr, channels=ch, duration_s=frames / sr,
                           reason="decodes to NaN/inf samples")
    dur = frames / sr
    if dur < min_duration_s:
        return ProbeResult(p, False, duration_s=dur, sample_rate=sr, channels=ch,
                           reason=f"too short: {dur:.3f} s < data.min_duration_s {min_duration_s:g} s")
    return ProbeResult(p, True, duration_s=dur, sample_rate=sr, channels=ch,
                       fingerprint=fp.exact() if fp else "", near_fingerprint=fp.near() if fp else "")


def file_kind(path: str | os.PathLike) -> str:
    """``file``, ``missing``, or what else ``path`` is (``directory``, ``fifo``, ``character device``,
    ``block device``, ``socket``), following symlinks, without opening it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable: {e.strerror}"
    if stat.S_ISREG(mode):
        return "file"
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _probe_star(args: tuple[str, float]) -> ProbeResult:
    return probe_file(*args)


def probe_files(
    paths: Sequence[str | os.PathLike],
    *,
    min_duration_s: float = 0.0,
    workers: int = 1,
    progress: bool = True,
    desc: str = "probe",
) -> list[ProbeResult]:
    """Probe many files (in parallel when ``workers > 1``); results in the order of ``paths``."""
    from tqdm import tqdm

    jobs = [(str(p), float(min_duration_s)) for p in paths]
    if not jobs:
        return []
    bar = tqdm(total=len(jobs), desc=desc, unit="file", file=sys.stderr, disable=not progress, leave=False)
    out: list[ProbeResult] = []
    try:
        if workers <= 1 or len(jobs) == 1:
            for j in jobs:
                out.append(_probe_star(j))
                bar.update(1)
        else:
            n = min(workers, len(jobs))
            chunk = max(1, min(32, len(jobs) // (n * 4)))
            with process_pool(n) as ex:
                for r in ex.map(_probe_star, jobs, chunksize=chunk):
                    out.append(r)
                    bar.update(1)
    finally:
        bar.close()
    return out
