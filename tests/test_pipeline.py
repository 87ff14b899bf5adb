"""End to end: `dvc repro` on a tiny synthetic dataset in a throw-away copy of the project.

Checks the acceptance points that only the whole pipeline shows: every stage runs offline,
a second `dvc repro` is a no-op, changing `split.seed` reruns split and its dependants only,
and a bad param stops the pipeline with one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

DVC = str(Path(sys.executable).parent / "dvc")

TINY = {
    "data": {"synthetic": {"clips_per_genre": 4, "duration_s": 4.0}, "inject_corrupt": 1, "workers": 2},
    "spectrogram": {"workers": 2},
    "features": {"workers": 2},
    "ml": {"models": ["logreg", "xgboost"], "xgboost": {"n_estimators": 20}},
    "dl": {"models": ["cnn2d", "musicnn_transfer"], "cnn2d": {"epochs": 1, "width": 0.25},
           "musicnn_transfer": {"epochs": 1, "finetune_epochs": 1}},
    "train": {"window_s": 1.0, "windows_per_track": 2},
    "evaluate": {"window_s": 1.0, "tempo_baseline": False},
    "tempo": {"train_clips": 8, "val_clips": 4, "heldout_clips": 3, "click_clips": 2, "duration_s": 3.0,
              "epochs": 2, "stretches": 1, "workers": 2},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def _copy_project(root: Path, dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = root / f
        # results of the project's own runs (metrics, reports, curves) are not copied: the copy's are its own
        if not src.is_file() or f.startswith(("tests/", "benchmarks/", "metrics/", "reports/", "dvclive/")) or f == "dvc.lock":
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="2")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def project(tiny_project: Path) -> Path:
    """The tiny project after its first `dvc repro` (conftest's session fixture; the
    cross-machine matrix copies it before these tests change it)."""
    return tiny_project


def _ran_stages(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def test_repro_produces_every_output(project: Path) -> None:
    assert (project / "data/raw/synthetic/tracks.csv").exists()
    assert (project / "data/split.csv").exists()
    assert (project / "data/spectrograms.h5").exists()
    assert (project / "data/features.parquet").exists()
    assert (project / "data/spectrograms_musicnn.h5").exists()
    models = ("logreg", "xgboost", "cnn2d", "svm-musicnn_msd", "logreg-musicnn_msd", "fusion", "musicnn_transfer")
    for m in models:
        assert (project / "models" / m / "model.json").exists(), m
        assert (project / "models" / m / "model.onnx").exists(), m  # what evaluate and predict run
    fetch = json.loads((project / "metrics/fetch.json").read_text())
    assert fetch["n_rejected"] >= 1  # the injected corrupt file was caught
    summary = json.loads((project / "metrics/summary.json").read_text())
    assert set(models) <= set(summary)
    board = (project / "reports/leaderboard.md").read_text()
    assert all(m in board for m in models)
    # the embedding models train on the candidate combination that won inner CV (named in the
    # card with every candidate's score); the transfer model carries the provenance of the
    # pretrained weights and the musicnn front end
    from mgr.features.tables import feature_names

    emb = json.loads((project / "models/svm-musicnn_msd/model.json").read_text())
    sel = emb["feature_selection"]
    assert emb["feature_set"] == sel["chosen"] and emb["feature_columns"] == feature_names(sel["chosen"])
    assert len(sel["candidates"]) == 6 and "musicnn_msd" in sel["chosen"]
    tr = json.loads((project / "models/musicnn_transfer/model.json").read_text())
    assert tr["frontend"]["preset"] == "musicnn" and tr["window_frames"] == 187
    assert tr["pretrained"]["source"]["package"] == "musicnn" and tr["pretrained"]["licence"]["spdx"] == "ISC"
    assert len(tr["pretrained"]["source"]["files"]) == 5  # sha256 of every checkpoint file
    # the learned tempo estimator: an ONNX artifact with its card, and the protocol's metrics
    tempo = json.loads((project / "models/tempo/model.json").read_text())
    assert tempo["kind"] == "tempo" and (project / "models/tempo" / tempo["onnx_file"]).exists()
    assert set(json.loads((project / "metrics/tempo.json").read_text())["sets"]) >= {"validation", "heldout_styles", "clicks"}
    for m in models:  # every card says what it was trained on (predict warns for the synthetic set)
        on = json.loads((project / "models" / m / "model.json").read_text())["trained_on"]
        assert on["source"] == "synthetic" and on["synthetic"] is True and on["n_train_tracks"] > 0, (m, on)


def test_second_repro_is_a_no_op(project: Path) -> None:
    r = _run([DVC, "repro"], project)
    assert r.returncode == 0, r.stderr
    assert _ran_stages(r.stdout) == set(), r.stdout


def _metrics_diff(project: Path, *revs: str) -> dict:
    r = _run([DVC, "metrics", "diff", *revs, "--json"], project)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout or "{}")


def _no_run_facts(d: object, where: str) -> None:
    from mgr.runs import RUN_KEYS

    if isinstance(d, dict):
        for k, v in d.items():
            assert k not in RUN_KEYS, f"{where}: run fact {k!r} in a metrics file"
            _no_run_facts(v, f"{where}.{k}")


def test_forced_rerun_changes_no_metric(project: Path) -> None:
    """Metrics hold results only and every stage is deterministic on one machine: commit the
    results, rerun every stage in fresh processes (`dvc repro --force`), and `dvc metrics diff`
    is empty; the deep models' training metrics are bit-identical."""
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "results")
    for f in (project / "metrics").rglob("*.json"):
        _no_run_facts(json.loads(f.read_text()), str(f.relative_to(project)))
    before = {f: f.read_bytes() for f in (project / "metrics" / "train-dl").glob("*.json")}
    preds = {f: f.read_bytes() for f in (project / "reports" / "predictions").glob("*.csv")}
    assert len(before) == 2 and len(preds) == 7
    r = _run([DVC, "repro", "--force"], project)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert {"train-dl@cnn2d", "train-dl@musicnn_transfer", "evaluate"} <= _ran_stages(r.stdout)
    assert _metrics_diff(project) == {}
    assert {f: f.read_bytes() for f in before} == before  # trained twice, fresh processes: same bytes
    assert {f: f.read_bytes() for f in preds} == preds
    # the run facts are there, out of metrics/ (git-ignored)
    facts = json.loads((project / "reports/runs/train-dl/cnn2d.json").read_text())
    assert facts["train_seconds"] > 0 and facts["seconds_per_epoch"] > 0 and facts["deterministic_ops"] is True
    for stage in ("fetch", "split", "spectrogram", "features", "evaluate"):
        assert "seconds" in json.loads((project / f"reports/runs/{stage}.json").read_text()) or stage == "split"
    status = subprocess.run(["git", "status", "--porcelain", "metrics", "reports"], cwd=project,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status


def test_worker_counts_rerun_nothing(project: Path) -> None:
    """`*.workers` are execution knobs: not tracked params, so changing them reruns no stage."""
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    for section in ("data", "spectrogram", "features", "ml", "train", "evaluate"):
        params[section]["workers"] = 1 + int(params[section].get("workers") or 0)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        r = _run([DVC, "status", "--json"], project)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout or "{}") == {}, r.stdout
    finally:
        (project / "params.yaml").write_text(original)


def _mgr(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(project / "src"))
    return subprocess.run([sys.executable, "-c", "from mgr.cli import main; main()", *args], cwd=project,
                          capture_output=True, text=True, env=env)


def test_compare_two_commits_that_differ_in_one_model_param(project: Path) -> None:
    """`mgr compare A B`: the model whose param changed (and its embedding twin, which shares
    `ml.logreg`) gets intervals and p-values; every other model shows no change."""
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "before", "--allow-empty")  # the results so far are A
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ml"]["logreg"]["C"] = 0.001
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _run([DVC, "repro"], project)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the fusion's logreg bases use ml.logreg too
    assert _ran_stages(r.stdout) == {"train-ml@logreg", "train-ml-embedding@logreg", "train-ml-stacked@fusion",
                                     "evaluate"}
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "logreg C=0.001")
    r = _mgr(project, "compare", "HEAD~1", "HEAD", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    models = {m["model"]: m for m in out["models"]}
    assert set(models) == {"logreg", "xgboost", "cnn2d", "musicnn_transfer", "svm-musicnn_msd", "logreg-musicnn_msd",
                           "fusion"}
    changed = {n for n, m in models.items() if not m["identical"]}
    assert "logreg" in changed and changed <= {"logreg", "logreg-musicnn_msd", "fusion"}, changed
    for row in models["logreg"]["rows"]:
        iv = row["interval"]
        assert row["p_value"] is not None and 0 < row["p_value"] <= 1
        assert iv["lo"] <= iv["delta"] <= iv["hi"] and row["verdict"] in ("significant", "within noise", "no change")
    for n in set(models) - changed:
        assert all(row["verdict"] == "no change" for row in models[n]["rows"])
    assert out["added"] == [] and out["removed"] == []
    md = _mgr(project, "compare", "HEAD~1", "HEAD", "--format", "md")
    assert md.returncode == 0 and "| logreg | accuracy |" in md.stdout and "no change" in md.stdout
    # the default: HEAD (no `main` here) against the workspace, which equals HEAD
    same = _mgr(project, "compare")
    assert same.returncode == 0, same.stderr
    assert same.stdout.count("no change (") == len(models), same.stdout


def test_exp_run_switches_the_feature_set(project: Path) -> None:
    """`dvc exp run -S features.set=...` retrains the models of ml.models on the new set (and the
    embedding and stacked models, whose `handcrafted` blocks follow features.set) and leaves the
    deep models alone."""
    r = _run([DVC, "exp", "run", "-S", "features.set=gtzan57+musicnn_msd"], project)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ran = _ran_stages(r.stdout)
    assert {"features", "train-ml@logreg", "train-ml@xgboost", "evaluate"} <= ran, ran
    assert not any(s.startswith(("train-dl", "spectrogram")) for s in ran), ran
    card = json.loads((project / "models/logreg/model.json").read_text())
    assert card["feature_set"] == "gtzan57+musicnn_msd" and len(card["feature_columns"]) == 57 + 400
    _git(project, "checkout", "--", "params.yaml")
    r = _run([DVC, "repro"], project)  # back to the committed set
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_changing_split_seed_reruns_split_and_dependants_only(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["seed"] = 7
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _run([DVC, "repro"], project)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ran = _ran_stages(r.stdout)
    assert "fetch" not in ran
    assert "split" in ran
    # dependants rerun unless their inputs came out identical (DVC then skips them)
    assert ran <= {"split", "spectrogram", "spectrogram-musicnn", "features", "train-ml@logreg", "train-ml@xgboost",
                   "train-ml-embedding@svm", "train-ml-embedding@logreg", "train-ml-stacked@fusion", "train-dl@cnn2d",
                   "train-dl@musicnn_transfer", "train-tempo", "evaluate"}


def test_bad_param_stops_with_one_line(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["strategy"] = "random"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _run([sys.executable, "stages/split.py"], project)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "split.strategy" in r.stderr and "stratified" in r.stderr
