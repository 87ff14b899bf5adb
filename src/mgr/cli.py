"""The ``mgr`` command line (typer).

Start-up must stay fast (``mgr --help`` well under 0.5 s): this module imports only typer and
the standard library at the top; every command imports what it needs inside its body.
User errors (:class:`mgr.errors.UserError`) are printed as one line, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="mgr",
    help="Music genre recognition, tempo and tags: inspect params, make example audio, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.5 s of start-up
)


@app.command("params")
def params_cmd(
    path: Annotated[Path, typer.Option("--file", "-f", help="params file to check")] = Path("params.yaml"),
) -> None:
    """Validate params.yaml and print the effective values (defaults filled in) as YAML."""
    import yaml

    from mgr.params import load_params

    p = load_params(path)
    typer.echo(yaml.safe_dump(p.as_dict(), sort_keys=False).rstrip())


@app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write the example clips into")],
    per_genre: Annotated[int, typer.Option(min=1, help="clips per genre")] = 1,
    duration: Annotated[float, typer.Option(min=1.0, help="clip length in seconds")] = 10.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="wav, flac or ogg")] = "wav",
    plot: Annotated[Optional[Path], typer.Option(help="also write a PNG with one log-mel per genre")] = None,
) -> None:
    """Write a few synthetic example clips (one per genre by default) to listen to, with their labels."""
    from mgr.datasets import synthetic

    written = synthetic.write_examples(out, per_genre=per_genre, duration_s=duration, seed=seed, fmt=fmt)
    typer.echo(f"wrote {len(written)} clips and their labels (tracks.csv) to {out}")
    if plot is not None:
        synthetic.plot_genres(plot, seed=seed, duration_s=duration)
        typer.echo(f"wrote {plot}")


@app.command("predict")
def predict_cmd(
    paths: Annotated[list[Path], typer.Argument(help="audio files and/or directories", show_default=False)],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="models/NAME or a model directory (default: best on the leaderboard)")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="genres to show per file")] = 3,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json (one object per line) or csv")] = "table",
    window: Annotated[Optional[float], typer.Option("--window", help="segment length in seconds (default: the model's window; classical: the whole file)")] = None,
    overlap: Annotated[float, typer.Option("--overlap", min=0.0, max=0.95, help="overlap of consecutive segments/windows (0..0.95)")] = 0.5,
    aggregate: Annotated[str, typer.Option("--aggregate", help="mean (probabilities) or vote (majority of segments)")] = "mean",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="descend into sub-directories")] = False,
    tag_threshold: Annotated[float, typer.Option("--tag-threshold", min=0.0, max=1.0, help="report tags scoring at least this")] = 0.5,
    root: Annotated[Path, typer.Option("--root", help="project root holding models/ and metrics/")] = Path("."),
) -> None:
    """Predict genre (top-k), tempo and tags for audio files.

    Exit codes: 0 every input succeeded; 1 at least one input failed (one 'error: PATH: reason'
    line each on stderr; the others were still predicted); 2 bad command line; 3 the model could
    not be found or loaded safely (nothing predicted).
    """
    from mgr.errors import ArtifactError, UserError
    from mgr.predict import EXIT_INPUT_FAILED, EXIT_MODEL, EXIT_USAGE, discover_inputs

    if fmt not in ("table", "json", "csv"):
        print(f"error: --format must be table, json or csv (got {fmt!r})", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    if aggregate not in ("mean", "vote"):
        print(f"error: --aggregate must be mean or vote (got {aggregate!r})", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    if window is not None and window <= 0:
        print(f"error: --window must be positive (got {window:g})", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    inputs = discover_inputs(paths, recursive=recursive)
    from mgr.predict import load_predictor, resolve_model

    try:
        predictor = load_predictor(
            resolve_model(model, root), top_k=top_k, window_s=window, overlap=overlap,
            aggregate=aggregate, tag_threshold=tag_threshold,
        )
    except ArtifactError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(EXIT_MODEL) from None
    except UserError as e:  # an option this model cannot honour (exit 2)
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(e.exit_code) from None
    failed = _run_predict(predictor, inputs, fmt)
    raise typer.Exit(EXIT_INPUT_FAILED if failed else 0)


def _run_predict(predictor, inputs, fmt: str) -> int:
    """Predict, stream json/csv lines to stdout, errors/warnings to stderr; return #failures."""
    import csv
    import os

    from mgr.predict import CSV_HEADER, InputFailure, csv_rows, predict_many, to_json_line

    n_files = sum(1 for i in inputs if not isinstance(i, InputFailure))
    show_bar = n_files > 1 and (sys.stderr.isatty() or os.environ.get("MGR_PROGRESS") == "1")
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit="file", file=sys.stderr, desc=f"predict ({predictor.name})")
    writer = csv.writer(sys.stdout) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_HEADER)
    failed = 0

    def emit(res) -> None:
        nonlocal failed
        msg = None
        if isinstance(res, InputFailure):
            failed += 1
            msg = f"error: {res.path}: {res.error}"
        if bar is not None:
            bar.update()
        if msg and bar is not None:
            bar.write(msg, file=sys.stderr)
        elif msg:
            print(msg, file=sys.stderr, flush=True)
        for w in getattr(res, "warnings", []) or []:
            print(f"warning: {res.path}: {w}", file=sys.stderr)
        if fmt == "json":
            print(to_json_line(res), flush=True)
        elif writer is not None:
            writer.writerow(csv_rows(res))
            sys.stdout.flush()

    results = predict_many(predictor, inputs, emit)
    if bar is not None:
        bar.close()
    if fmt == "table":
        _print_table(predictor, results)
    return failed


def _print_table(predictor, results) -> None:
    from rich.console import Console
    from rich.table import Table

    from mgr.predict import InputFailure

    table = Table(title=f"{predictor.name} ({predictor.kind}, {predictor.runtime})", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("genre", style="bold")
    table.add_column("top-k")
    table.add_column("tempo (BPM)", justify="right")
    table.add_column("tags")
    for r in results:
        if isinstance(r, InputFailure):
            table.add_row(r.path, "[red]error[/red]", r.error, "", "")
            continue
        tempo = "" if r.tempo_bpm is None else f"{r.tempo_bpm:.1f}" + (" (dsp)" if r.tempo_source == "dsp" else "")
        table.add_row(r.path, r.genre or "-", "  ".join(f"{lab} {p:.2f}" for lab, p in r.top_k), tempo,
                      ", ".join(f"{t} {s:.2f}" for t, s in r.tags))
    Console(soft_wrap=False).print(table)


@app.command("models")
def models_cmd(
    root: Annotated[Path, typer.Option("--root", help="project root holding models/ and metrics/")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per model")] = False,
) -> None:
    """List the trained artifacts in models/ with their card (kind, labels, test metrics, date), and
    the built-in pretrained taggers (musicnn-msd, musicnn-mtt) that need no training run."""
    import json

    from mgr.predict import best_model_name, builtin_models, list_models

    recs = list_models(root) + builtin_models()
    if as_json:
        for r in recs:
            print(json.dumps(r))
        return
    if not any(r.get("kind") != "pretrained" for r in recs):
        print(f"no trained models in {root / 'models'} (run `dvc repro`); the built-in pretrained ones:", file=sys.stderr)
    from rich.console import Console
    from rich.table import Table

    best = best_model_name(root)
    table = Table(title="models/ and built-in", title_justify="left")
    for col in ("name", "kind", "labels", "test accuracy", "created", "detail"):
        table.add_column(col, overflow="fold")
    for r in recs:
        if "error" in r:
            table.add_row(r["name"], "[red]invalid[/red]", r["error"], "", "", "")
            continue
        test = r.get("test") or {}
        acc = f"{test['accuracy']:.3f}" if "accuracy" in test else "-"
        labels = ", ".join(r["labels"][:6]) + (f" (+{len(r['labels']) - 6})" if len(r["labels"]) > 6 else "")
        name = r["name"] + (" *" if r["name"] == best else "")
        table.add_row(name, r["kind"], labels, acc, str(r.get("created") or "-"), str(r.get("detail") or ""))
    Console(soft_wrap=False).print(table)
    if best:
        print("* default for `mgr predict` (best test accuracy)")


@app.command("version")
def version_cmd() -> None:
    """Print the mgr version."""
    from mgr import __version__

    typer.echo(__version__)


def main() -> None:
    from mgr.errors import run_reporting_user_errors

    run_reporting_user_errors(app)


if __name__ == "__main__":
    main()
