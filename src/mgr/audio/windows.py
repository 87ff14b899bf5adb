"""The one window tiler: fixed-length windows over a signal or a spectrogram (last one end-aligned).

Used by the spectrogram store, training, evaluate and predict; frames-level helpers in
:mod:`mgr.dsp.frontend` build on :func:`window_starts`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

__all__ = ["hop_for", "n_windows", "window_starts", "windows"]

import numpy as np


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


def hop_for(length: int, hop: int | None, overlap: float | None) -> int:
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
    hop = hop_for(length, hop, overlap)
    total = x.shape[-1]
    if total < length:
        widths = [(0, 0)] * (x.ndim - 1) + [(0, length - total)]
        yield np.pad(x, widths, constant_values=pad_value)
        return
    for s in window_starts(total, length, hop):
        yield x[..., s : s + length]
