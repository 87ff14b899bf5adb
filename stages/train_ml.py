"""train-ml stage: train one classical model on data/features.parquet.

Usage: ``python stages/train_ml.py <name>`` (``<name>`` in ``ml.models``; dvc.yaml runs one
per entry with ``foreach``: ``<model>`` of ``ml.models`` trains on ``features.set``,
``<model>-<embedding>`` of ``ml.embedding_models`` on the ``ml.embedding_candidates`` combination of
``features.embedding``, its taggram and the handcrafted set that wins inner cross-validation,
``fusion`` of ``ml.stacked_models`` stacks ``ml.fusion.estimators``).
Writes ``models/<name>/`` (``model.json`` + ``model.skops`` or ``model.ubj`` + ``model.onnx``,
what evaluate and predict run) and ``metrics/train-ml/<name>.json``. The work is in
:func:`mgr.models.classical.train`; see that module for the protocol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import run  # noqa: E402

FEATURES = Path("data/features.parquet")


def main(argv: list[str] | None = None) -> None:
    from mgr.errors import ParamsError
    from mgr.io import write_json
    from mgr.models import classical, classical_artifact
    from mgr.params import classical_models, load_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="model name (one of ml.models)")
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--features", default=str(FEATURES), help="features table (default: %(default)s)")
    ap.add_argument("--models-dir", default="models", help="where models/<name>/ goes (default: %(default)s)")
    ap.add_argument("--metrics-dir", default="metrics/train-ml", help="where <name>.json goes (default: %(default)s)")
    args = ap.parse_args(argv)

    p = load_params(args.params)
    if args.name not in classical_models(p):
        raise ParamsError(f"params: {args.name!r} is neither in ml.models nor an ml.embedding_models entry "
                          f"({', '.join(classical_models(p))})")

    table = classical.load_table(args.features)
    outcome = classical.train(
        args.name, table, p.ml, feature_set=p.features.set, features=p.features, workers=p.ml.workers,
        log=lambda s: print(s, flush=True)
    )
    model_dir = Path(args.models_dir) / args.name
    from mgr.cards import trained_on

    part = outcome.card.get("trained_on")  # which part of the split (a sentence from classical.train)
    outcome.card["trained_on"] = {**trained_on(p.data, outcome.card.get("n_train")), "part": part}
    classical_artifact.save(outcome.model, model_dir, outcome.card, sample=outcome.sample)
    write_json(Path(args.metrics_dir) / f"{args.name}.json", outcome.metrics)
    val = outcome.metrics.get("val")
    k = outcome.metrics["folds"]
    summary = (f"val accuracy {val['accuracy']:.3f}" + (f", mean over {k} folds" if k > 1 else "")) if val else "no val tracks"
    print(f"{args.name}: wrote {model_dir}/ ({summary})")


if __name__ == "__main__":
    run(main)
