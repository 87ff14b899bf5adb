"""Reading the sharded spectrogram store: row access over the shards of a virtual ``/spec``.

Kept apart from the writer (:mod:`mgr.distributed.shards`) so that the stages that only read a
store (training, evaluation, predict) depend on this small module alone.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ShardRows"]


class ShardRows:
    """Row access to a virtual ``/spec`` over shard files: ``rows[a:b]`` -> ``(b - a, n_mels)``.

    Uncompressed contiguous shards are memory-mapped (views); otherwise the virtual dataset is
    read through h5py. A slice inside one shard (every track's block is) is one read.
    """

    def __init__(self, index_path: str | os.PathLike, ds: Any):
        import h5py

        self.shape = ds.shape
        self._ds = ds
        base = Path(index_path).resolve().parent
        self._starts: list[int] = []
        self._maps: list[Any] = []
        self.memmapped = True
        for vs in sorted(ds.virtual_sources(), key=lambda v: v.vspace.get_select_bounds()[0][0]):
            lo = vs.vspace.get_select_bounds()[0][0]
            f = base / vs.file_name
            with h5py.File(f, "r") as h5:
                sds = h5[vs.dset_name]
                off = sds.id.get_offset() if sds.chunks is None and sds.compression is None else None
                shape = sds.shape
            if off is None:
                self.memmapped = False
                break
            self._starts.append(int(lo))
            self._maps.append(np.memmap(f, dtype=np.dtype("<f4"), mode="r", offset=off, shape=shape))

    def __getitem__(self, key: slice) -> np.ndarray:
        if not self.memmapped or not isinstance(key, slice):
            return self._ds[key]
        a, b = key.start or 0, self.shape[0] if key.stop is None else key.stop
        k = bisect.bisect_right(self._starts, a) - 1
        if k < 0:
            return self._ds[key]
        s0 = self._starts[k]
        m = self._maps[k]
        if b - s0 <= m.shape[0]:
            return m[a - s0 : b - s0]
        return self._ds[key]  # crosses a shard boundary (never for one track's block)
