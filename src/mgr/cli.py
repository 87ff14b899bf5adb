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


@app.command("version")
def version_cmd() -> None:
    """Print the mgr version."""
    from mgr import __version__

    typer.echo(__version__)


def main() -> None:
    from mgr.errors import UserError

    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
