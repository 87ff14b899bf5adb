"""Comparison across commits: `dvc metrics diff` / `dvc params diff` on a throw-away git + DVC
repo that uses this project's top-level `metrics:` layout, and the PR workflow's YAML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DVC = str(Path(sys.executable).parent / "dvc")
WORKFLOW = ROOT / ".github" / "workflows" / "pr-metrics.yml"

# A stand-in for the evaluate stage: writes metrics/<model>.json and metrics/summary.json in the
# evaluate stage's shapes from one param, so two commits differ in both params and metrics.
FAKE_EVALUATE = """\
import json, pathlib, yaml
p = yaml.safe_load(open("params.yaml"))["evaluate"]
acc = round(0.5 + 0.1 * p["window_s"], 4)
m = pathlib.Path("metrics"); m.mkdir(exist_ok=True)
json.dump({"track": {"accuracy": acc, "macro_f1": acc - 0.1}, "n_tracks": 48, "n_skipped": 0},
          open(m / "logreg.json", "w"), indent=2, sort_keys=True)
json.dump({"logreg": {"accuracy": acc, "macro_f1": acc - 0.1, "top3": 1.0}},
          open(m / "summary.json", "w"), indent=2, sort_keys=True)
"""


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check:
        assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("diffrepo")
    _run(["git", "init", "-q", "-b", "main"], d)
    _run([DVC, "init", "-q"], d)
    _run([DVC, "config", "core.analytics", "false"], d)
    project = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (d / "evaluate.py").write_text(FAKE_EVALUATE)
    dvc_yaml = {
        "stages": {
            "evaluate": {
                "cmd": f"{sys.executable} evaluate.py",
                "deps": ["evaluate.py"],
                "params": ["evaluate"],
                "metrics": [{"metrics/summary.json": {"cache": False}}],
            }
        },
        # this project's own top-level entry: every file under metrics/ is a metric
        "metrics": project["metrics"],
    }
    (d / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (d / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"window_s": 3.0, "overlap": 0.5}}))
    _run([DVC, "repro", "-q"], d)
    _run(["git", "add", "-A"], d)
    _run(["git", "commit", "-qm", "baseline"], d)
    # the second state: a param change, rerun, commit
    (d / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"window_s": 1.5, "overlap": 0.5}}))
    _run([DVC, "repro", "-q"], d)
    _run(["git", "add", "-A"], d)
    _run(["git", "commit", "-qm", "shorter windows"], d)
    return d


@pytest.mark.slow  # several dvc processes (~3-5 s each on a busy machine)
def test_metrics_diff_between_commits(repo: Path) -> None:
    out = json.loads(_run([DVC, "metrics", "diff", "HEAD~1", "HEAD", "--json"], repo).stdout)
    summary = out["metrics/summary.json"]
    assert summary["logreg.accuracy"]["old"] == pytest.approx(0.8)
    assert summary["logreg.accuracy"]["new"] == pytest.approx(0.65)
    assert summary["logreg.accuracy"]["diff"] == pytest.approx(-0.15)
    assert "logreg.top3" not in summary  # unchanged values are left out without --all
    per_model = out["metrics/logreg.json"]  # found through the top-level `metrics:` directory
    assert per_model["track.accuracy"]["new"] == pytest.approx(0.65)
    assert "n_tracks" not in per_model
    md = _run([DVC, "metrics", "diff", "HEAD~1", "HEAD", "--md"], repo).stdout
    assert md.lstrip().startswith("| Path") and "logreg.accuracy" in md and "-0.15" in md


@pytest.mark.slow  # several dvc processes (~3-5 s each on a busy machine)
def test_metrics_diff_against_main_in_the_workspace(repo: Path) -> None:
    # what the PR workflow runs: the workspace (a branch's results) against main
    _run(["git", "checkout", "-q", "-b", "feature"], repo)
    try:
        (repo / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"window_s": 2.0, "overlap": 0.5}}))
        _run([DVC, "repro", "-q"], repo)
        out = json.loads(_run([DVC, "metrics", "diff", "main", "--json"], repo).stdout)
        assert out["metrics/summary.json"]["logreg.accuracy"]["old"] == pytest.approx(0.65)
        assert out["metrics/summary.json"]["logreg.accuracy"]["new"] == pytest.approx(0.7)
        md = _run([DVC, "metrics", "diff", "--md", "main"], repo).stdout
        assert "| metrics/summary.json" in md and "0.7" in md
    finally:
        _run(["git", "checkout", "-q", "--", "."], repo)
        _run(["git", "checkout", "-q", "main"], repo)


@pytest.mark.slow  # several dvc processes (~3-5 s each on a busy machine)
def test_params_diff_between_commits(repo: Path) -> None:
    out = json.loads(_run([DVC, "params", "diff", "HEAD~1", "HEAD", "--json"], repo).stdout)
    p = out["params.yaml"]
    assert p["evaluate.window_s"] == {"old": 3.0, "new": 1.5, "diff": -1.5}
    assert "evaluate.overlap" not in p  # unchanged
    md = _run([DVC, "params", "diff", "HEAD~1", "HEAD", "--md"], repo).stdout
    assert "evaluate.window_s" in md and "1.5" in md
    # no change between a commit and itself
    assert json.loads(_run([DVC, "params", "diff", "HEAD", "HEAD", "--json"], repo).stdout or "{}") == {}


# ------------------------------------------------------------------------- the PR workflow
def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps() -> list[dict]:
    jobs = _workflow()["jobs"]
    assert len(jobs) == 1
    return next(iter(jobs.values()))["steps"]


def test_workflow_runs_on_pull_requests_with_comment_permission() -> None:
    wf = _workflow()
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in on
    assert wf["permissions"]["pull-requests"] == "write"
    job = next(iter(wf["jobs"].values()))
    assert job["runs-on"].startswith("ubuntu") and job["timeout-minutes"] > 0


def test_workflow_steps_repro_then_diff_against_main_then_comment() -> None:
    steps = _steps()
    for s in steps:
        assert ("uses" in s) != ("run" in s), s  # each step is an action or a command
    runs = [s.get("run", "") for s in steps]
    uses = [s.get("uses", "") for s in steps]
    checkout = steps[uses.index(next(u for u in uses if u.startswith("actions/checkout@")))]
    assert checkout["with"]["fetch-depth"] == 0  # main's history is needed for the diff

    def first(pred) -> int:
        return next(i for i, r in enumerate(runs) if pred(r))

    i_fetch = first(lambda r: "git fetch" in r and "refs/heads/main" in r)
    i_sync = first(lambda r: "uv sync --locked" in r)
    i_repro = first(lambda r: "dvc repro" in r)
    i_diff = first(lambda r: "dvc metrics diff --md main" in r)
    i_comment = first(lambda r: "gh pr comment" in r)
    assert i_fetch < i_repro and i_sync < i_repro < i_diff < i_comment
    assert "dvc params diff --md main" in runs[i_diff]
    # the comment is the report the diff step wrote
    assert "metrics-report.md" in runs[i_diff] and "--body-file metrics-report.md" in runs[i_comment]
    assert "GH_TOKEN" in steps[i_comment]["env"]
    assert "params.yaml" not in runs[i_repro]  # default params: the synthetic dataset
    assert (ROOT / "uv.lock").is_file()  # `uv sync --locked` needs it
