"""fetch stage: data.source -> data/raw/<source>/ (tracks.csv, rejected.csv) + metrics/fetch.json.

Usage (dvc.yaml names the paths): ``python stages/fetch.py --out data/raw --metrics metrics/fetch.json
--validation-reports reports/validation``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, run  # noqa: E402


def main(
    params_file: str | Path = "params.yaml",
    root: str | Path = "data/raw",
    metrics_file: str | Path = "metrics/fetch.json",
    report_dir: str | Path = "reports/validation",
    progress: bool = True,
) -> dict:
    from mgr.data.fetch import fetch
    from mgr.data.tracks import load_tracks
    from mgr.io import n_workers, write_json
    from mgr.params import load_params
    from mgr.runs import split_run_facts, write_run_facts

    p = load_params(params_file)
    with Timer() as t:
        res = fetch(p, root, progress=progress)
    # metrics: counts only; the duration and workers are run facts (reports/runs/fetch.json)
    metrics, facts = split_run_facts(res.metrics())
    write_json(metrics_file, metrics)
    write_run_facts("fetch", {**facts, "seconds": t.seconds, "workers": n_workers(p.data.workers)},
                    root=Path(metrics_file).parent.parent)
    print(
        f"fetch: {res.n_tracks} tracks, {res.n_rejected} rejected "
        f"(see {res.dataset_dir / 'rejected.csv'}) in {res.dataset_dir}",
        file=sys.stderr,
    )
    d = res.duplicates
    if d.get("groups"):
        print(
            f"warning: fetch: {d['exact_tracks']} track(s) in {d['exact_sets']} set(s) of identical audio "
            f"({d['conflicting_sets']} filed under several genres), {d['near_pairs']} near-duplicate pair(s); "
            f"data.duplicates: {d['policy']}, {d['dropped']} dropped (see {res.dataset_dir / 'duplicates.csv'})",
            file=sys.stderr,
        )
    try:
        from mgr.data.validation import validate_tracks
    except ImportError:  # the validation module is optional for the fetch itself
        validate_tracks = None
    if validate_tracks is not None:
        validate_tracks(
            load_tracks(res.dataset_dir),
            genres=res.genres,
            min_duration_s=p.data.min_duration_s,
            report_dir=Path(report_dir),
        )
    return metrics


def cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--out", default="data/raw", help="datasets root: <out>/<source>/ (default: %(default)s)")
    ap.add_argument("--metrics", default="metrics/fetch.json", help="metrics file (default: %(default)s)")
    ap.add_argument("--validation-reports", default="reports/validation",
                    help="data-validation reports (default: %(default)s)")
    args = ap.parse_args(argv)
    main(args.params, args.out, args.metrics, args.validation_reports, progress=sys.stderr.isatty())


if __name__ == "__main__":
    run(cli)
