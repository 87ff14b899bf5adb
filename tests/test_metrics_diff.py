"""Comparison across commits: `dvc metrics diff` / `dvc params diff` on a throw-away git + DVC
repo that uses this project's top-level `metrics:` layout, the PR report (scripts/pr_report.py,
run as the workflow does) and the workflow's YAML; and the dvc.yaml rules that keep the
comparison honest: no execution knob (`*.workers`) among the tracked params, and every module a
stage can import among its deps."""

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
# per-track predictions (the evaluate stage's reports/predictions/<model>.csv): the first
# round(acc * 20) of 20 tracks right
r = pathlib.Path("reports/predictions"); r.mkdir(parents=True, exist_ok=True)
right = round(acc * 20)
rows = ["track_id,fold,true,predicted,p_a,p_b,p_c"]
for i in range(20):
    t = "abc"[i % 3]
    pr = t if i < right else "abc"[(i + 1) % 3]
    rows.append(f"t{i:02d},,{t},{pr}," + ",".join("0.8" if c == pr else "0.1" for c in "abc"))
(r / "logreg.csv").write_text("\\n".join(rows) + "\\n")
pathlib.Path("reports/leaderboard.md").write_text("# Leaderboard\\n\\n| # | model | accuracy |\\n|---|---|---|\\n"
                                                  f"| 1 | logreg | {acc:.3f} |\\n")
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
                "outs": [{"reports/predictions": {"cache": False}}, {"reports/leaderboard.md": {"cache": False}}],
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


def test_workflow_steps_repro_then_report_against_main_then_one_comment() -> None:
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
    i_base = first(lambda r: "git worktree add" in r)
    i_report = first(lambda r: "scripts/pr_report.py" in r)
    i_comment = first(lambda r: "gh pr comment" in r)
    assert i_fetch < i_repro and i_sync < i_repro < i_base < i_report < i_comment
    # like with like: main reproduced on the same runner, its stages restored from the shared run-cache
    assert "../base main" in runs[i_base] and "cache.dir" in runs[i_base] and "dvc repro" in runs[i_base]
    i_cache = next(i for i, u in enumerate(uses) if u.startswith("actions/cache@"))
    assert steps[i_cache]["with"]["path"] == ".dvc/cache" and i_cache < i_repro
    assert "--base main" in runs[i_report] and "--out metrics-report.md" in runs[i_report]
    assert "--base-dir ../base" in runs[i_report]
    assert 'cat metrics-report.md >> "$GITHUB_STEP_SUMMARY"' in runs[i_report]  # the job summary: the same report
    assert (ROOT / "scripts" / "pr_report.py").is_file()
    # ONE comment: the previous one (found by the report's marker) is edited, else one is created
    post = steps[i_comment]
    assert "GH_TOKEN" in post["env"] and post["env"]["MARKER"] == _pr_report().MARKER
    assert "--paginate" in runs[i_comment] and "select(.body | contains(" in runs[i_comment]
    assert "--method PATCH" in runs[i_comment] and "issues/comments/${id}" in runs[i_comment]
    assert "body=@metrics-report.md" in runs[i_comment] and "--body-file metrics-report.md" in runs[i_comment]
    assert "params.yaml" not in runs[i_repro]  # default params: the synthetic dataset
    assert (ROOT / "uv.lock").is_file()  # `uv sync --locked` needs it


def _pr_report():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pr_report", ROOT / "scripts" / "pr_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # several dvc processes (~3-5 s each on a busy machine)
def test_pr_report_dry_run_against_main(repo: Path) -> None:
    """The workflow's report step, run locally: a branch whose workspace changed one param."""
    _run(["git", "checkout", "-q", "-b", "report"], repo)
    try:
        (repo / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"window_s": 4.5, "overlap": 0.5}}))
        _run([DVC, "repro", "-q"], repo)
        env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(ROOT / "src"))
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "pr_report.py"), "--base", "main", "--out",
                            "metrics-report.md", "--title", "Pipeline results for abc12345", "--resamples", "500"],
                           cwd=repo, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        md = (repo / "metrics-report.md").read_text()
        assert md.startswith(_pr_report().MARKER + "\n## Pipeline results for abc12345")
        # main: window_s 1.5 -> accuracy 0.65 (13/20 right); here 4.5 -> 0.95 (19/20)
        assert "### Model comparison: `main` (A) → `workspace` (B)" in md
        assert "| logreg | accuracy | 0.650 | 0.950 | +0.300 |" in md
        assert "0.0312" in md  # McNemar: b = 0, c = 6 -> 2 / 64
        assert "### Params vs main" in md and "evaluate.window_s" in md
        assert "### Metrics vs `main` as committed" in md and "| metrics/summary.json | logreg.accuracy | 0.65 | 0.95 | +0.3 |" in md
        assert md.splitlines()[3].startswith("**") and "metric value(s) changed" in md.splitlines()[3]
        assert "### Leaderboard" in md and "| 1 | logreg | 0.950 |" in md and "\n# Leaderboard" not in md
        # no predictions on the base: a line, not a failure
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "pr_report.py"), "--base", "main~1", "--out",
                            "r2.md"], cwd=repo, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
    finally:
        for f in ("metrics-report.md", "r2.md"):
            (repo / f).unlink(missing_ok=True)
        _run(["git", "checkout", "-q", "--", "."], repo)
        _run(["git", "checkout", "-q", "main"], repo)


@pytest.mark.slow  # several dvc processes (~3-5 s each on a busy machine)
def test_a_comment_only_pull_request_reports_no_metric_changed(repo: Path, tmp_path: Path) -> None:
    """A branch that edits only a comment (the stage reruns: its code changed): the report says
    "No metric changed", against main as committed and against main reproduced on this machine
    in a worktree that shares the DVC cache (its stage comes from the run-cache, not recomputed)."""
    _run(["git", "checkout", "-q", "-b", "comment"], repo)
    base = tmp_path / "base"
    try:
        code = (repo / "evaluate.py").read_text()
        (repo / "evaluate.py").write_text(code.replace("import json", "# a comment, nothing else\nimport json", 1))
        out = _run([DVC, "repro"], repo).stdout
        assert "Running stage 'evaluate'" in out  # the code dep changed: the stage reran
        env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(ROOT / "src"))
        script = [sys.executable, str(ROOT / "scripts" / "pr_report.py"), "--base", "main", "--resamples", "200"]
        r = subprocess.run([*script, "--out", "a.md"], cwd=repo, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        md = (repo / "a.md").read_text()
        assert md.splitlines()[3] == "**No metric changed.**" and "_No metric changed._" in md
        assert "| significant |" not in md and "| logreg | all |" in md and "no change (20 tracks identical)" in md
        # like with like: main reproduced here, sharing the cache: restored from the run-cache
        _run(["git", "worktree", "add", "-q", "--detach", str(base), "main"], repo)
        _run([DVC, "config", "--local", "cache.dir", str(repo / ".dvc" / "cache")], base)
        out = _run([DVC, "repro"], base).stdout
        assert "Running stage 'evaluate'" not in out  # nothing recomputed
        r = subprocess.run([*script, "--base-dir", str(base), "--out", "b.md"], cwd=repo, capture_output=True,
                           text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        md = (repo / "b.md").read_text()
        assert md.splitlines()[3] == "**No metric changed.**" and "reproduced on this runner" in md
        # and a real change is reported as one, against the same reproduced base
        (repo / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"window_s": 2.0, "overlap": 0.5}}))
        _run([DVC, "repro", "-q"], repo)
        r = subprocess.run([*script, "--base-dir", str(base), "--out", "c.md"], cwd=repo, capture_output=True,
                           text=True, env=env)
        md = (repo / "c.md").read_text()
        assert "metric value(s) changed** (base reproduced on this runner" in md and "| +0.05 |" in md
    finally:
        for f in ("a.md", "b.md", "c.md"):
            (repo / f).unlink(missing_ok=True)
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=repo, capture_output=True)
        _run(["git", "checkout", "-q", "--", "."], repo)
        _run(["git", "checkout", "-q", "main"], repo)


def test_machine_sensitive_figures_are_marked() -> None:
    m = _pr_report()
    deep = {"cnn2d"}
    assert m.machine_sensitive("metrics/train-dl/cnn2d.json", "val.accuracy", deep)
    assert m.machine_sensitive("metrics/cnn2d.json", "track.accuracy", deep)
    assert m.machine_sensitive("metrics/summary.json", "cnn2d.accuracy", deep)
    assert m.machine_sensitive("metrics/tempo.json", "sets.clicks.acc1", deep)
    assert not m.machine_sensitive("metrics/summary.json", "svm.accuracy", deep)
    assert not m.machine_sensitive("metrics/svm.json", "track.accuracy", deep)
    base = {"metrics/summary.json": {"svm.accuracy": 0.5, "cnn2d.accuracy": 0.6}}
    head = {"metrics/summary.json": {"svm.accuracy": 0.5, "cnn2d.accuracy": 0.7}, "metrics/new.json": {"x": 1}}
    ch = m.metric_changes(base, head)
    assert ch == [("metrics/new.json", "x", None, 1), ("metrics/summary.json", "cnn2d.accuracy", 0.6, 0.7)]
    assert m.verdict([], deep, False) == "**No metric changed.**"
    assert "hardware alone" in m.verdict(ch[1:], deep, False) and "1 machine-sensitive" in m.verdict(ch, deep, False)


# ---------------------------------------------------------------- dvc.yaml: params and code deps
def _stages() -> dict[str, dict]:
    d = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    return {n: st.get("do", st) for n, st in d["stages"].items()}


def _param_names(st: dict) -> list[str]:
    out = []
    for p in st.get("params", []):
        out += list(p) if isinstance(p, dict) else [p]
    return out


def test_no_execution_knob_is_a_tracked_param() -> None:
    """`*.workers` change how fast a stage runs, never what it writes: no stage tracks one, nor a
    whole section that holds one (changing parallelism must rerun nothing)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, st in _stages().items():
        for p in _param_names(st):
            assert p.split(".")[-1] != "workers", f"{name} tracks {p}"
            node = params
            for part in p.split("."):
                node = node.get(part, {}) if isinstance(node, dict) and "$" not in part else {}
            assert not (isinstance(node, dict) and "workers" in node), f"{name} tracks the whole {p} (holds workers)"


def test_params_listed_by_key_cover_their_section() -> None:
    """A stage that lists a section's keys lists all of them but `workers` (a new key is not
    forgotten)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = _stages()
    for stage, section in (("fetch", "data"), ("spectrogram", "spectrogram"), ("train-dl", "train"),
                           ("evaluate", "evaluate")):
        listed = {p.split(".", 1)[1] for p in _param_names(stages[stage]) if p.startswith(section + ".")}
        assert listed == set(params[section]) - {"workers"}, (stage, set(params[section]) ^ listed)
    assert {"features.set", "features.embedding"} <= set(_param_names(stages["features"]))


def _mgr_module(name: str) -> Path | None:
    base = ROOT / "src" / Path(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def _imports(path: Path) -> set[Path]:
    """Files of the `mgr` modules (and stages/_common.py) that ``path`` imports anywhere (lazy imports
    in functions included), with every parent package."""
    import ast

    tree = ast.parse(path.read_text())
    rel = path.relative_to(ROOT)
    pkg = list(rel.parent.parts[1:]) if rel.parts[0] == "src" else []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(pkg[: len(pkg) - node.level + 1] + ([mod] if mod else []))
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    out: set[Path] = set()
    for n in names:
        if n == "_common" and rel.parts[0] == "stages":
            out.add(ROOT / "stages" / "_common.py")
        if not n.startswith("mgr"):
            continue
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            f = _mgr_module(".".join(parts[:i]))
            if f is not None:
                out.add(f)
    return out


def _closure(script: Path) -> set[str]:
    seen: set[Path] = set()
    todo = [script]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += list(_imports(f) - seen)
    return {str(f.relative_to(ROOT)) for f in seen}


def test_every_imported_module_is_a_dep_of_its_stage() -> None:
    """A stage reruns when any code it can run changes: its script, stages/_common.py and every
    src/mgr module it imports, transitively (a file, or a directory above it, among its deps)."""
    for name, st in _stages().items():
        script = ROOT / st["cmd"].split()[1]
        deps = [d.rstrip("/") for d in st["deps"]]
        missing = sorted(f for f in _closure(script) if not any(f == d or f.startswith(d + "/") for d in deps))
        assert not missing, f"stage {name} misses code deps {missing}"


def test_code_dep_check_catches_a_missing_module() -> None:
    # the DSP tempo baseline of evaluate runs mgr.dsp.kernels (a lazy import inside a worker function)
    assert "src/mgr/dsp/kernels.py" in _closure(ROOT / "stages" / "evaluate.py")
    assert "stages/_common.py" in _closure(ROOT / "stages" / "split.py")
    assert "src/mgr/runs.py" in _closure(ROOT / "stages" / "split.py")  # through _common
