"""The pull-request report: the workspace's results (after `dvc repro`) against a base revision.

Usage: ``python scripts/pr_report.py [--base main] [--out metrics-report.md] [--title T]``

Writes one Markdown document (what the PR workflow posts as its single comment, and the job
summary): a hidden marker line (:data:`MARKER`, by which the workflow finds and edits its
earlier comment), ``mgr compare``'s table (per-track paired statistics, the stored predictions
of the base against the workspace's), ``dvc params diff``, ``dvc metrics diff`` and the
leaderboard. A part that cannot be made (no predictions on the base yet, dvc failing) is a
line saying so, never a failed report. Runs locally as is (a dry run of the workflow's step).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

MARKER = "<!-- mgr-pr-report -->"


def _dvc() -> str:
    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.is_file() else (shutil.which("dvc") or "dvc")


def _section(title: str, cmd: list[str], cwd: Path) -> list[str]:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=dict(os.environ, DVC_NO_ANALYTICS="1"))
    except OSError as e:
        return [f"### {title}", "", f"_not available: {e}_", ""]
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or ["failed"])[-1]
        return [f"### {title}", "", f"_`{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}` failed: {err}_", ""]
    body = r.stdout.strip()
    return [f"### {title}", "", body or "_no change_", ""]


def build_report(base: str = "main", root: Path = Path("."), title: str | None = None,
                 n_resamples: int = 2000) -> str:
    from mgr.evaluation.compare import compare, render
    from mgr.errors import UserError

    root = Path(root)
    lines = [MARKER, f"## {title or 'Pipeline results'}", ""]
    try:
        lines += [render(compare(root, base, None, n_resamples=n_resamples), "md").rstrip(), ""]
        lines += [f"_Base = the predictions committed on `{base}` (deep models are bit-reproducible on one "
                  "machine only; a different runner can move them within noise)._", ""]
    except UserError as e:
        lines += ["### Model comparison", "", f"_{e}_", ""]
    lines += _section(f"Params vs {base}", [_dvc(), "params", "diff", "--md", base], root)
    lines += _section(f"Metrics vs {base}", [_dvc(), "metrics", "diff", "--md", base], root)
    board = root / "reports" / "leaderboard.md"
    lines += ["### Leaderboard", ""]
    if board.is_file():
        text = board.read_text().strip().splitlines()
        lines += [ln for ln in text if not ln.startswith("# ")]  # drop the page title
    else:
        lines.append("_no reports/leaderboard.md (the evaluate stage did not run)_")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="git revision to compare with (default: %(default)s)")
    ap.add_argument("--out", default="metrics-report.md", help="Markdown file to write (default: %(default)s)")
    ap.add_argument("--title", default=None, help="heading of the report")
    ap.add_argument("--root", default=".", help="project root (default: %(default)s)")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    args = ap.parse_args(argv)
    text = build_report(args.base, Path(args.root), args.title, args.resamples)
    Path(args.out).write_text(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
