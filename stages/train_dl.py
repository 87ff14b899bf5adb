"""train-dl stage: train one deep model on its spectrogram store.

Usage: ``python stages/train_dl.py <name> [--store S] [--pretrained-store P]`` (``<name>`` in
``dl.models``; dvc.yaml runs one per entry with ``foreach``). From-scratch models train on
``--store`` (the ``spectrogram`` params' front end), pretrained ones (``musicnn_transfer``) on
``--pretrained-store`` (musicnn's front end). Writes ``models/<name>/`` (``model.keras`` +
``model.onnx`` + ``model.json``; in k-fold
mode with ``train.all_folds`` also one ``fold_<f>/`` per fold), ``metrics/train-dl/<name>.json``
and the dvclive curves in ``dvclive/<name>/``. The work is in
:func:`mgr.models.training.run_train_dl`; see :mod:`mgr.models.training` for the protocol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import run  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from mgr.errors import ParamsError
    from mgr.params import load_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="model name (one of dl.models)")
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--store", default="data/spectrograms.h5", help="spectrogram store (default: %(default)s)")
    ap.add_argument("--pretrained-store", default="data/spectrograms_musicnn.h5",
                    help="store of musicnn's front end, for musicnn_transfer (default: %(default)s)")
    ap.add_argument("--models-dir", default="models", help="where models/<name>/ goes (default: %(default)s)")
    ap.add_argument("--metrics-dir", default="metrics/train-dl", help="where <name>.json goes (default: %(default)s)")
    ap.add_argument("--live-dir", default="dvclive", help="dvclive root, curves in <root>/<name>/ (default: %(default)s)")
    ap.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity 0/1/2 (default: %(default)s)")
    args = ap.parse_args(argv)

    p = load_params(args.params)
    if args.name not in p.dl.models:
        raise ParamsError(f"params: {args.name!r} is not in dl.models ({', '.join(p.dl.models)})")
    from mgr.models.deep import PRETRAINED
    from mgr.models.training import run_train_dl

    m = run_train_dl(
        args.name, p, store_path=args.pretrained_store if args.name in PRETRAINED else args.store, models_dir=args.models_dir, metrics_dir=args.metrics_dir,
        live_root=args.live_dir, verbose=args.verbose,
    )
    val = m.get("val") or {}
    folds = m.get("folds")
    over = f" (mean over {folds} folds)" if folds else ""
    summary = (
        f"val track accuracy {val['track']['accuracy']:.3f}, macro-F1 {val['track']['macro_f1']:.3f}{over}"
        if val.get("track") else "no val tracks"
    )
    if "tempo" in val:
        summary += f", tempo Acc1 {val['tempo'].get('acc1', float('nan')):.3f}"
    runs = f"{folds} folds" if folds else f"{m['epochs_run']} epochs"
    print(f"{args.name}: wrote {Path(args.models_dir) / args.name}/ in {m['train_seconds']:.0f} s "
          f"({runs}, {summary})")


if __name__ == "__main__":
    run(main)
