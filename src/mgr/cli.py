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
from typer.core import TyperCommand

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
    from mgr.data.sources import synthetic

    written = synthetic.write_examples(out, per_genre=per_genre, duration_s=duration, seed=seed, fmt=fmt)
    typer.echo(f"wrote {len(written)} clips and their labels (tracks.csv) to {out}")
    if plot is not None:
        synthetic.plot_genres(plot, seed=seed, duration_s=duration)
        typer.echo(f"wrote {plot}")


class _OneLineUsageErrors(TyperCommand):
    """A command whose command-line errors (bad value, missing argument, unknown option) are one
    ``error: ...`` line and exit status 2, instead of click's usage block."""

    def parse_args(self, ctx, args):
        # typer's (vendored) click UsageError: the base of its public BadParameter
        usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
        try:
            return super().parse_args(ctx, args)
        except usage_error as e:
            msg = " ".join(e.format_message().split())  # one line, whatever click put in it
            print(f"error: {msg} (see mgr {ctx.info_name} --help)", file=sys.stderr)
            raise typer.Exit(2) from None


@app.command("predict", cls=_OneLineUsageErrors)
def predict_cmd(
    paths: Annotated[list[Path], typer.Argument(help="audio files and/or directories", show_default=False)],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="models/NAME or a model directory (default: best on the leaderboard)")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="genres to show per file (1..1000)")] = 3,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json (one object per line) or csv")] = "table",
    window: Annotated[Optional[float], typer.Option("--window", help="segment length in seconds, 0.5..600 (default: the model's window; classical: the whole file)")] = None,
    overlap: Annotated[float, typer.Option("--overlap", help="overlap of consecutive segments/windows (0..0.95)")] = 0.5,
    aggregate: Annotated[str, typer.Option("--aggregate", help="mean (probabilities) or vote (majority of segments)")] = "mean",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="descend into sub-directories")] = False,
    tag_threshold: Annotated[float, typer.Option("--tag-threshold", help="report tags scoring at least this (0..1)")] = 0.5,
    max_duration: Annotated[float, typer.Option("--max-duration", help="refuse files longer than this many seconds (default 4 h)")] = 14400.0,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="give up on a file after this many seconds (default: no limit)")] = None,
    root: Annotated[Path, typer.Option("--root", help="project root holding models/ and metrics/")] = Path("."),
    min_confidence: Annotated[Optional[float], typer.Option("--min-confidence", help="answer 'unknown' (genre null, with a reason) when the top probability is below this (0..1)")] = None,
    timeline: Annotated[bool, typer.Option("--timeline", help="also report every segment: start/end (s), top-k, tempo, tags; silent ones marked")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar and no warning lines (errors are still printed)")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="worker processes for many files (0: one per CPU; 1: in-process)")] = 0,
    tempo: Annotated[str, typer.Option("--tempo", help="tempo estimator: auto (the learned models/tempo when it beat DSP on validation), dsp or learned")] = "auto",
    music_gate: Annotated[bool, typer.Option("--music-gate/--no-music-gate", help="refuse genre, tempo and tags (null, reason 'no music detected: ...') for inputs without music: noise, hum, tones, speech, applause")] = True,
) -> None:
    """Predict genre (top-k), tempo and tags for audio files.

    Exit codes: 0 every input succeeded; 1 at least one input failed (one 'error: PATH: reason'
    line each on stderr; the others were still predicted); 2 bad command line; 3 the model could
    not be found or loaded safely (nothing predicted).
    """
    # One OpenBLAS thread (before NumPy loads it; what the user set is kept): predict's few small
    # BLAS calls left its idle threads spinning, measured +20-40 % CPU and +3-9 % wall time per
    # 30 s clip (benchmarks/gate_overhead.py --blas); parallelism is --jobs and onnxruntime's.
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from mgr.errors import ArtifactError, UserError
    from mgr.inference.inputs import (
        EXIT_INPUT_FAILED,
        EXIT_MODEL,
        EXIT_USAGE,
        check_options,
        discover_inputs,
    )
    from mgr.inference.output import display_text

    if tempo not in ("auto", "dsp", "learned"):
        print(f"error: --tempo must be auto, dsp or learned (got {display_text(repr(tempo))})", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    if fmt not in ("table", "json", "csv"):
        print(f"error: --format must be table, json or csv (got {display_text(repr(fmt))})", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    opts = dict(top_k=top_k, window_s=window, overlap=overlap, aggregate=aggregate, tag_threshold=tag_threshold,
                max_duration_s=max_duration, time_limit_s=timeout, min_confidence=min_confidence, timeline=timeline,
                gate=None if music_gate else False)
    try:  # every numeric option finite and in range, before anything is loaded
        check_options(**{k: v for k, v in opts.items() if k != "gate"})
        if not 0 <= jobs <= 256:
            raise UserError(f"--jobs must be 0..256, got {jobs}")
    except UserError as e:
        print(f"error: {display_text(str(e))}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    inputs = discover_inputs(paths, recursive=recursive)
    from mgr.inference.catalog import resolve_model
    from mgr.inference.predictors import load_predictor

    try:
        predictor = load_predictor(resolve_model(model, root), **opts, tempo=tempo, tempo_dir=root / "models" / "tempo")
    except ArtifactError as e:
        print(f"error: {display_text(str(e))}", file=sys.stderr)
        raise typer.Exit(EXIT_MODEL) from None
    except UserError as e:  # an option this model cannot honour (exit 2)
        print(f"error: {display_text(str(e))}", file=sys.stderr)
        raise typer.Exit(e.exit_code) from None
    from mgr.inference.catalog import synthetic_warning

    note = synthetic_warning(predictor)
    if note and not quiet:  # one line per run, before any result
        print(f"warning: {display_text(note)}", file=sys.stderr, flush=True)
    try:
        from mgr.io import n_workers

        failed = _run_predict(predictor, inputs, fmt, quiet=quiet, workers=n_workers(jobs))
    except ArtifactError as e:  # the model failed in a way that is not about one file
        print(f"error: {display_text(str(e))}", file=sys.stderr)
        raise typer.Exit(EXIT_MODEL) from None
    except UserError as e:
        print(f"error: {display_text(str(e))}", file=sys.stderr)
        raise typer.Exit(e.exit_code) from None
    raise typer.Exit(EXIT_INPUT_FAILED if failed else 0)


def _run_predict(predictor, inputs, fmt: str, quiet: bool = False, workers: int = 1) -> int:
    """Predict, stream json/csv lines to stdout, errors/warnings to stderr; return #failures."""
    import csv
    import os

    from mgr.inference.output import (
        CSV_HEADER,
        CSV_TIMELINE_HEADER,
        InputFailure,
        csv_rows,
        csv_timeline_rows,
        display_path,
        display_text,
        to_json_line,
    )
    from mgr.inference.predict import predict_many

    timeline = getattr(predictor, "timeline", False)
    n_files = sum(1 for i in inputs if not isinstance(i, InputFailure))
    show_bar = not quiet and n_files > 1 and (sys.stderr.isatty() or os.environ.get("MGR_PROGRESS") == "1")
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit="file", file=sys.stderr, desc=f"predict ({display_text(predictor.name)})")
    writer = csv.writer(sys.stdout) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_TIMELINE_HEADER if timeline else CSV_HEADER)
    failed = 0

    def emit(res) -> None:
        nonlocal failed
        msg = None
        if isinstance(res, InputFailure):
            failed += 1
            msg = f"error: {display_path(res.path)}: {display_text(res.error)}"
        if bar is not None:
            bar.update()
        if msg and bar is not None:
            bar.write(msg, file=sys.stderr)
        elif msg:
            print(msg, file=sys.stderr, flush=True)
        for w in ([] if quiet else getattr(res, "warnings", []) or []):
            print(f"warning: {display_path(res.path)}: {display_text(w)}", file=sys.stderr)
        if fmt == "json":
            print(to_json_line(res), flush=True)
        elif writer is not None:
            writer.writerows(csv_timeline_rows(res) if timeline else [csv_rows(res)])
            sys.stdout.flush()

    results = predict_many(predictor, inputs, emit, workers=workers)
    if bar is not None:
        bar.close()
    if fmt == "table":
        _print_table(predictor, results)
        if timeline:
            _print_timeline(results)
    return failed


def _print_table(predictor, results) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from mgr.inference.output import InputFailure, display_path, display_text

    def T(s: str) -> Text:  # plain text: a "[red]" in a file name or label is not rich markup
        return Text(display_text(s))

    table = Table(title=T(f"{predictor.name} ({predictor.kind}, {predictor.runtime})"), title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("genre", style="bold")
    table.add_column("top-k")
    table.add_column("tempo (BPM)", justify="right")
    table.add_column("tags")
    ood_seen = False
    for r in results:
        if isinstance(r, InputFailure):
            table.add_row(Text(display_path(r.path)), Text("error", style="red"), T(r.error), "", "")
            continue
        tempo = "" if r.tempo_bpm is None else f"{r.tempo_bpm:.1f}" + (" (dsp)" if r.tempo_source == "dsp" else "")
        genre = r.genre or ("no music" if getattr(r, "music", None) is False else
                            "unknown" if getattr(r, "reason", None) and r.top_k else
                            "silence" if getattr(r, "reason", None) else "-")
        if getattr(r, "in_distribution", None) is False:  # the out-of-distribution check
            genre += " (?)"
            ood_seen = True
        table.add_row(Text(display_path(r.path)), T(genre), T("  ".join(f"{lab} {p:.2f}" for lab, p in r.top_k)),
                      tempo, T(", ".join(f"{t} {s:.2f}" for t, s in r.tags)))
    if ood_seen:
        table.caption = "(?) far from what the model was trained on (in_distribution: false): treat the genre with doubt"
    Console(soft_wrap=False).print(table)


def _print_timeline(results) -> None:
    """``--timeline`` in the table format: one table per file, one row per segment."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from mgr.inference.output import display_path, display_text

    console = Console(soft_wrap=False)
    for r in results:
        segs = getattr(r, "segments", None)
        if not segs:
            continue
        table = Table(title=Text(f"timeline: {display_path(r.path)}"), title_justify="left")
        for col, just in (("start (s)", "right"), ("end (s)", "right"), ("genre", "left"), ("top-k", "left"),
                          ("tempo (BPM)", "right"), ("tags", "left")):
            table.add_column(col, justify=just)
        for sg in segs:
            genre = "silence" if sg.silent else sg.genre or ("no music" if sg.music is False else
                                                              "unknown" if sg.reason else "-")
            table.add_row(f"{sg.start_s:.2f}", f"{sg.end_s:.2f}", Text(display_text(genre)),
                          Text(display_text("  ".join(f"{lab} {p:.2f}" for lab, p in sg.top_k))),
                          "" if sg.tempo_bpm is None else f"{sg.tempo_bpm:.1f}",
                          Text(display_text(", ".join(f"{t} {v:.2f}" for t, v in sg.tags))))
        console.print(table)


@app.command("models")
def models_cmd(
    root: Annotated[Path, typer.Option("--root", help="project root holding models/ and metrics/")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per model")] = False,
) -> None:
    """List the trained artifacts in models/ with their card (kind, labels, test metrics, date), and
    the built-in pretrained taggers (musicnn-msd, musicnn-mtt) that need no training run."""
    import json

    from mgr.inference.catalog import best_model_name, builtin_models, list_models

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


@app.command("compare")
def compare_cmd(
    a: Annotated[Optional[str], typer.Argument(help="old version: a git revision (default: main, or HEAD on main)", show_default=False)] = None,
    b: Annotated[Optional[str], typer.Argument(help="new version: a git revision (default: the workspace)", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, md (Markdown, for pull requests) or json")] = "text",
    resamples: Annotated[int, typer.Option(min=100, help="bootstrap resamples / permutations")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the resampling")] = 0,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="significance level")] = 0.05,
    root: Annotated[Path, typer.Option(help="project root (a git checkout)")] = Path("."),
) -> None:
    """Compare the per-track test predictions of two versions (reports/predictions/*.csv): per
    model the change of accuracy, macro-F1 and top-3 with a paired bootstrap 95 % interval and a
    paired test, marked significant or within noise; per-class recall changes; models added or removed."""
    from mgr.evaluation.compare import compare, render

    c = compare(root, a, None if b in (None, "", ".", "workspace") else b, n_resamples=resamples, seed=seed, alpha=alpha)
    typer.echo(render(c, fmt), nl=False)


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
