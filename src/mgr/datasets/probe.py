"""Probe audio files: decode each one fully, measure duration, sample rate and channels.

Used by every dataset source. A file that cannot be opened, does not decode to the end,
holds no samples, or is shorter than the minimum duration gets a one-line reason instead.
Probing runs in a :class:`~concurrent.futures.ProcessPoolExecutor`; results come back in
input order while the pool streams through the files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class ProbeResult:
    path: str
    ok: bool
    duration_s: float = float("nan")
    sample_rate: int = 0
    channels: int = 0
    reason: str = ""


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    text = msg[0] if msg else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def probe_file(path: str | os.PathLike, min_duration_s: float = 0.0) -> ProbeResult:
    """Decode ``path`` completely with soundfile and report what it holds."""
    import soundfile as sf

    p = str(path)
    if not os.path.isfile(p):
        return ProbeResult(p, False, reason="file not found")
    if os.path.getsize(p) == 0:
        return ProbeResult(p, False, reason="empty file (0 bytes)")
    try:
        with sf.SoundFile(p) as f:
            sr, ch = int(f.samplerate), int(f.channels)
            frames = 0
            finite = True
            while True:
                block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                frames += block.shape[0]
                if finite and not np.isfinite(block).all():
                    finite = False
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
    return ProbeResult(p, True, duration_s=dur, sample_rate=sr, channels=ch)


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
            with ProcessPoolExecutor(max_workers=n) as ex:
                for r in ex.map(_probe_star, jobs, chunksize=chunk):
                    out.append(r)
                    bar.update(1)
    finally:
        bar.close()
    return out
