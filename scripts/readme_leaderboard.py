"""Copy the leaderboard the pipeline wrote (reports/leaderboard.md) into README.md.

The README shows a narrower table (the columns in ``COLUMNS``) between two marker lines; this
script rewrites what is between them, and ``--check`` only says whether it is current
(exit 1 if not). ``tests/test_docs.py`` runs the check, so a README whose table differs from
``reports/leaderboard.md`` fails the test suite; after ``dvc repro`` changes the leaderboard, run:

    uv run python scripts/readme_leaderboard.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- leaderboard: from reports/leaderboard.md by scripts/readme_leaderboard.py -->"
END = "<!-- /leaderboard -->"
COLUMNS = ("#", "model", "kind", "accuracy", "macro-F1", "top-3", "ECE", "Brier", "tracks (skipped)")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def leaderboard_rows(leaderboard_md: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the first Markdown table in the leaderboard file."""
    lines = [ln for ln in leaderboard_md.splitlines() if ln.lstrip().startswith("|")]
    if len(lines) < 2:
        raise ValueError("no table in the leaderboard")
    header = _cells(lines[0])
    return header, [_cells(ln) for ln in lines[2:]]


def readme_table(leaderboard_md: str) -> str:
    """The README's table: ``COLUMNS`` of every leaderboard row, in the leaderboard's order."""
    header, rows = leaderboard_rows(leaderboard_md)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"leaderboard has no column {missing}")
    idx = [header.index(c) for c in COLUMNS]
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r[i] for i in idx) + " |" for r in rows]
    return "\n".join(out)


def render(readme: str, leaderboard_md: str) -> str:
    """``readme`` with the text between the markers replaced by the current table."""
    if BEGIN not in readme or END not in readme:
        raise ValueError("README.md has no leaderboard markers")
    head, rest = readme.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{readme_table(leaderboard_md)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check (exit 1 if README.md is stale)")
    ap.add_argument("--root", type=Path, default=ROOT)
    args = ap.parse_args(argv)
    readme_path = args.root / "README.md"
    try:
        readme = readme_path.read_text(encoding="utf-8")
        new = render(readme, (args.root / "reports" / "leaderboard.md").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if new == readme:
        return 0
    if args.check:
        print("error: README.md's leaderboard differs from reports/leaderboard.md "
              "(run: uv run python scripts/readme_leaderboard.py)", file=sys.stderr)
        return 1
    readme_path.write_text(new, encoding="utf-8")
    print(f"updated {readme_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
