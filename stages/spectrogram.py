"""spectrogram stage: audio + data/split.csv -> an HDF5 spectrogram store (+ its metrics file).

Usage (dvc.yaml names the paths): ``python stages/spectrogram.py --tracks data/raw/<source>/tracks.csv
--split data/split.csv --out data/spectrograms.h5 --metrics metrics/spectrogram.json
--validation-reports reports/validation [--preset NAME]``. Without
``--preset`` the front end is the ``spectrogram`` params' (``data/spectrograms.h5``, what the
from-scratch deep models train on); ``--preset musicnn`` writes the store of musicnn's own front
end (``data/spectrograms_musicnn.h5``, what ``musicnn_transfer`` trains on). One store per front
end; dvc.yaml runs one stage for each.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish_extraction, run, stage_args  # noqa: E402


def keep_freed_memory() -> None:
    """glibc: keep freed heap memory for reuse instead of handing it back to the kernel.

    By default glibc serves allocations above a (dynamic) threshold with fresh ``mmap``s and trims
    the heap top after large frees, so every clip's multi-MiB temporaries (decoded samples,
    FFT blocks, the result) come back as new zero-filled pages: ~1300 page faults per 30 s clip,
    about a quarter of the stage's CPU time. Set in this process before the worker pool forks
    (the workers inherit it); memory stays bounded by the largest clip's working set. A no-op
    where glibc's ``mallopt`` is not available.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: trim the heap only above 256 MiB free
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: blocks below 64 MiB come from the heap
    except (OSError, AttributeError):  # not glibc
        pass


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()
    from mgr.data.validation.features import validate_store
    from mgr.distributed.engine import empty_shard_dir
    from mgr.features.extract import read_inputs
    from mgr.features.store import build_store
    from mgr.params import load_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="front-end preset overriding spectrogram.preset (e.g. musicnn)")
    stage_args(ap, out="data/spectrograms.h5", metrics="metrics/spectrogram.json")
    args = ap.parse_args(argv)

    p = load_params(args.params)
    sp = p.spectrogram if args.preset is None else dataclasses.replace(p.spectrogram, preset=args.preset)
    tracks = read_inputs(Path(args.tracks or f"data/raw/{p.data.source}/tracks.csv"), args.split)
    if p.distributed.shard_tracks:  # shards on Dask (local cluster or distributed.scheduler; docs/SCALE.md)
        from mgr.distributed.shards import build_sharded_store
        from mgr.io import n_workers

        report = build_sharded_store(tracks, p.audio, sp, args.out, shard_tracks=p.distributed.shard_tracks,
                                     workers=n_workers(p.spectrogram.workers), scheduler=p.distributed.scheduler)
    else:
        report = build_store(tracks, p.audio, sp, args.out, workers=p.spectrogram.workers,
                             progress=sys.stderr.isatty())
        empty_shard_dir(args.out)  # the shards folder is an output in both modes (empty here)
    validate_store(args.out, report_dir=Path(args.validation_reports))
    finish_extraction(args.metrics, report, args.out)
    print(f"spectrogram ({sp.preset}): {report['n_tracks']} tracks, {report['n_skipped']} skipped, "
          f"{report['seconds']:.1f} s -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    run(main)
