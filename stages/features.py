"""features stage: audio + data/split.csv -> data/features.parquet (+ metrics/features.json).

Usage (dvc.yaml names the paths): ``python stages/features.py --tracks data/raw/<source>/tracks.csv
--split data/split.csv --out data/features.parquet --metrics metrics/features.json
--validation-reports reports/validation``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish_extraction, run, stage_args  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from mgr.data.validation.features import validate_feature_table
    from mgr.distributed.engine import empty_shard_dir
    from mgr.features.extract import load_inputs
    from mgr.features.tables import (
        build_feature_table,
        feature_names,
        read_feature_table,
    )
    from mgr.params import feature_sets_needed, load_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stage_args(ap, out="data/features.parquet", metrics="metrics/features.json")
    args = ap.parse_args(argv)
    OUT = args.out
    p = load_params(args.params)
    tracks = load_inputs(Path(args.tracks or f"data/raw/{p.data.source}/tracks.csv"), args.split)
    # features.set plus the sets that `<model>-<set>` entries of ml.models name, in one table
    feature_set = "+".join(feature_sets_needed(p))
    if p.distributed.shard_tracks:  # parts on Dask (local cluster or distributed.scheduler; docs/SCALE.md)
        from mgr.distributed.tables import build_sharded_feature_table
        from mgr.io import n_workers

        report = build_sharded_feature_table(tracks, p.audio, feature_set, OUT, shard_tracks=p.distributed.shard_tracks,
                                             workers=n_workers(p.features.workers), scheduler=p.distributed.scheduler)
    else:
        report = build_feature_table(tracks, p.audio, feature_set, OUT, workers=p.features.workers,
                                     progress=sys.stderr.isatty())
        empty_shard_dir(OUT)  # the parts folder is an output in both modes (empty here)
    validate_feature_table(read_feature_table(OUT), feature_names(feature_set),
                           sample_rate=p.audio.sample_rate, expected_tracks=tracks["track_id"].tolist(),
                           report_dir=Path(args.validation_reports))
    finish_extraction(args.metrics, report, OUT)
    print(f"features: {report['n_tracks']} tracks x {report['n_features']} {feature_set} features, "
          f"{report['n_skipped']} skipped, {report['seconds']:.1f} s -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    run(main)
