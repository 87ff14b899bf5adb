"""The pull-request report: the workspace's results (after `dvc repro`) against a base revision.

Usage: ``python scripts/pr_report.py [--base main] [--base-dir DIR] [--out metrics-report.md] [--title T]``

Writes one Markdown document (what the PR workflow posts as its single comment, and the job
summary): a hidden marker line (:data:`MARKER`, by which the workflow finds and edits its
earlier comment), a one-line verdict (**No metric changed** when every metric is the same),
``mgr compare``'s table (per-track paired statistics), ``dvc params diff``, the changed metrics
and the leaderboard. A part that cannot be made (no predictions on the base yet, dvc failing)
is a line saying so, never a failed report. Runs locally as is (a dry run of the workflow's step).

Like with like: with ``--base-dir`` (a checkout of the base revision where ``dvc repro`` ran on
this same machine -- the workflow makes one with ``git worktree`` and DVC's shared run-cache, so
stages the pull request did not touch are restored, not recomputed), the base's metrics and
predictions are read from there. Without it they are the files committed on the base, produced
on another machine: the figures marked machine-sensitive (deep models and the tempo estimator,
whose training kernels and onnxruntime's are chosen by CPU; see the README's "Same results on
every machine") may then differ by hardware alone, and the report says so.
"""

from __future__ import annotations

import argparse
import json
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


# ------------------------------------------------------------------------------- metrics
def _flatten(d: object, prefix: str = "") -> dict[str, object]:
    """``{"a.b.c": leaf}`` of a metrics JSON (lists are leaves)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, object] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _git_out(root: Path, *args: str) -> str | None:
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def metrics_of(root: Path, rev: str | None = None) -> dict[str, dict[str, object]]:
    """``{file: {key: value}}`` of every ``metrics/**.json`` in the checkout ``root`` (``rev``
    None) or committed at git revision ``rev``. Unreadable files are left out."""
    out: dict[str, dict[str, object]] = {}
    if rev is None:
        for f in sorted((root / "metrics").rglob("*.json")):
            try:
                out[f.relative_to(root).as_posix()] = _flatten(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue
        return out
    names = _git_out(root, "ls-tree", "-r", "--name-only", rev, "--", "metrics")
    for name in (names or "").split():
        if name.endswith(".json"):
            text = _git_out(root, "show", f"{rev}:{name}")
            try:
                out[name] = _flatten(json.loads(text)) if text is not None else {}
            except ValueError:
                continue
    return out


def deep_models(root: Path) -> set[str]:
    """Names of the models whose figures are machine-sensitive: ``dl.models`` of params.yaml."""
    try:
        import yaml

        return set((yaml.safe_load((root / "params.yaml").read_text()) or {}).get("dl", {}).get("models") or [])
    except (OSError, ValueError, AttributeError):
        return set()


def machine_sensitive(file: str, key: str, deep: set[str]) -> bool:
    """Whether ``file``'s ``key`` comes from a deep model or the tempo estimator (trained with
    oneDNN and scored with onnxruntime, whose kernels are chosen by CPU)."""
    stem = Path(file).stem
    if file.startswith("metrics/train-dl/") or stem.startswith("tempo"):
        return True
    if stem in deep:
        return True
    return stem == "summary" and key.split(".", 1)[0] in deep


def metric_changes(base: dict, head: dict) -> list[tuple[str, str, object, object]]:
    """``(file, key, base value, head value)`` for every metric that differs (added or removed
    ones included, with None on the missing side), sorted."""
    out = []
    for f in sorted(set(base) | set(head)):
        a, b = base.get(f, {}), head.get(f, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append((f, k, a.get(k), b.get(k)))
    return out


def _fmt(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def metrics_section(changes: list, deep: set[str], where: str) -> list[str]:
    lines = [f"### Metrics vs {where}", ""]
    if not changes:
        return lines + ["_No metric changed._", ""]
    lines += ["| file | metric | base | head | change |", "|---|---|---|---|---|"]
    for f, k, a, b in changes[:200]:
        mark = " †" if machine_sensitive(f, k, deep) else ""
        delta = f"{b - a:+.4g}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) else ""
        lines.append(f"| {f} | {k}{mark} | {_fmt(a)} | {_fmt(b)} | {delta} |")
    if len(changes) > 200:
        lines.append(f"| … | {len(changes) - 200} more | | | |")
    return lines + [""]


def verdict(changes: list, deep: set[str], like_with_like: bool) -> str:
    """The report's first line: what changed, and whether hardware alone can explain it."""
    if not changes:
        return "**No metric changed.**"
    sens = sum(machine_sensitive(f, k, deep) for f, k, _, _ in changes)
    text = f"**{len(changes)} metric value(s) changed**"
    if like_with_like:
        return text + " (base reproduced on this runner: every change comes from the pull request)."
    if sens == len(changes):
        return (text + ", all of them machine-sensitive (†): the base was produced on another machine, so "
                "hardware alone can explain them; reproduce the base here (`--base-dir`) to tell.")
    return text + f" ({sens} machine-sensitive †, {len(changes) - sens} not)."


def build_report(base: str = "main", root: Path = Path("."), title: str | None = None,
                 n_resamples: int = 2000, base_dir: Path | None = None) -> str:
    from mgr.evaluation.compare import compare, compare_versions, load_version, render
    from mgr.errors import UserError

    root = Path(root)
    deep = deep_models(root)
    like = base_dir is not None
    base_metrics = metrics_of(Path(base_dir)) if like else metrics_of(root, base)
    changes = metric_changes(base_metrics, metrics_of(root))
    where = f"`{base}` reproduced on this runner" if like else f"`{base}` as committed"
    lines = [MARKER, f"## {title or 'Pipeline results'}", "", verdict(changes, deep, like), ""]
    try:
        if like:
            va, vb = load_version(Path(base_dir), None), load_version(root, None)
            if not va and not vb:
                raise UserError("compare: no predictions in the base checkout nor in the workspace")
            comp = compare_versions(va, vb, a=f"{base} (this runner)", b="workspace", n_resamples=n_resamples)
        else:
            comp = compare(root, base, None, n_resamples=n_resamples)
        lines += [render(comp, "md").rstrip(), ""]
        lines += [f"_Base = {where}. "
                  + ("Both sides ran on this machine: a change is the pull request's._" if like else
                     "Deep models and the tempo estimator (†) are bit-reproducible on one machine; a different "
                     "runner's CPU can move them within noise._"), ""]
    except UserError as e:
        lines += ["### Model comparison", "", f"_{e}_", ""]
    lines += _section(f"Params vs {base}", [_dvc(), "params", "diff", "--md", base], root)
    lines += metrics_section(changes, deep, where)
    if changes and any(machine_sensitive(f, k, deep) for f, k, _, _ in changes):
        lines += ["_† machine-sensitive: trained with oneDNN and scored with onnxruntime, whose kernels are "
                  "chosen by CPU._", ""]
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
    ap.add_argument("--base-dir", default=None,
                    help="a checkout of the base where dvc repro ran on this machine (compare like with like)")
    args = ap.parse_args(argv)
    text = build_report(args.base, Path(args.root), args.title, args.resamples,
                        Path(args.base_dir) if args.base_dir else None)
    Path(args.out).write_text(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
