"""The `mgr predict` and `mgr models` commands: output formats, stderr lines, exit codes."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mgr.cli import app

FIX = Path(__file__).resolve().parent / "data" / "predict"
SR = 22050


def _clip(path: Path, seconds: float = 2.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 330 * t) * (0.3 + (np.mod(t, 0.5) < 0.03)) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, y.astype(np.float32), SR)
    return path


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


@pytest.fixture
def project(tmp_path):
    """A project root with two models, a summary naming the best, and a few clips."""
    (tmp_path / "models").mkdir()
    shutil.copytree(FIX / "tiny_cnn", tmp_path / "models" / "cnn2d")
    shutil.copytree(FIX / "tiny_tempo", tmp_path / "models" / "tempo_genre")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "summary.json").write_text(
        json.dumps({"models": {"cnn2d": {"accuracy": 0.5}, "tempo_genre": {"accuracy": 0.9}}}))
    (tmp_path / "metrics" / "tempo_genre.json").write_text(json.dumps({"track": {"accuracy": 0.9, "macro_f1": 0.88}}))
    audio = tmp_path / "audio"
    audio.mkdir()
    _clip(audio / "a.wav", seed=1)
    _clip(audio / "b.flac", seed=2)
    return tmp_path


def test_json_lines_default_model_and_exit_0(project):
    r = run("predict", str(project / "audio"), "--root", str(project), "--format", "json", "--top-k", "2")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert [Path(x["path"]).name for x in lines] == ["a.wav", "b.flac"]
    for x in lines:
        assert set(x) == {"path", "genre", "top_k", "tempo_bpm", "tags"}
        assert len(x["top_k"]) == 2 and x["top_k"][0]["label"] == x["genre"]
        assert 0.0 <= x["top_k"][1]["prob"] <= x["top_k"][0]["prob"] <= 1.0
        assert isinstance(x["tempo_bpm"], float) and isinstance(x["tags"], list)
    assert r.stderr == ""


def test_failed_inputs_exit_1_one_stderr_line_each(project):
    (project / "bad.wav").write_bytes(b"RIFF....garbage")
    (project / "empty.ogg").write_bytes(b"")
    r = run("predict", str(project / "bad.wav"), str(project / "audio" / "a.wav"), str(project / "nope.mp3"),
            str(project / "empty.ogg"), "--root", str(project), "-m", "cnn2d", "--format", "json")
    assert r.exit_code == 1
    out = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert [("error" in x) for x in out] == [True, False, True, True]
    assert out[2] == {"path": str(project / "nope.mp3"), "error": "no such file or directory"}
    err = r.stderr.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") for e in err)
    assert "bad.wav" in err[0] and "nope.mp3: no such file or directory" in err[1] and "empty file" in err[2]
    assert "Traceback" not in r.output


def test_csv_and_table_formats(project):
    r = run("predict", str(project / "audio" / "a.wav"), "--root", str(project), "--format", "csv")
    assert r.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 1 and rows[0]["genre"] in {"blues", "classical", "rock"} and rows[0]["error"] == ""
    assert rows[0]["top_k"].count(":") == 3 and float(rows[0]["tempo_bpm"]) > 0
    r = run("predict", str(project / "audio"), "--root", str(project), "-m", "cnn2d")
    assert r.exit_code == 0
    assert "a.wav" in r.stdout and "b.flac" in r.stdout and "(dsp)" in r.stdout and "tiny_cnn (deep, onnx)" in r.stdout


def test_short_file_warns_and_still_succeeds(project):
    p = _clip(project / "short.wav", seconds=0.6)
    r = run("predict", str(p), "--root", str(project), "--format", "json")
    assert r.exit_code == 0
    assert "warning:" in r.stderr and "padded with silence" in r.stderr
    assert "genre" in json.loads(r.stdout)


def test_model_problems_exit_3_with_one_line(project):
    r = run("predict", str(project / "audio"), "--root", str(project), "-m", "svm")
    assert r.exit_code == 3
    assert r.stderr.strip().count("\n") == 0 and "model 'svm' not found" in r.stderr
    (project / "models" / "cnn2d" / "model.keras").write_bytes(b"\x80\x04not a keras file")
    r = run("predict", str(project / "audio"), "--root", str(project), "-m", "cnn2d")
    assert r.exit_code == 3 and "does not match the sha256" in r.stderr


def test_bad_options_exit_2(project):
    a = str(project / "audio")
    assert run("predict", a, "--root", str(project), "--format", "xml").exit_code == 2
    assert run("predict", a, "--root", str(project), "--aggregate", "median").exit_code == 2
    assert run("predict", a, "--root", str(project), "--overlap", "1.5").exit_code == 2
    assert run("predict", a, "--root", str(project), "--window", "0").exit_code == 2
    r = run("predict", a, "--root", str(project), "--window", "0.6")  # below the model's 1 s window
    assert r.exit_code == 2 and "shorter than the model's window" in r.stderr
    assert run("predict", "--root", str(project)).exit_code == 2  # no path


def test_vote_window_overlap_options(project):
    _clip(project / "long.wav", seconds=5.0)
    r = run("predict", str(project / "long.wav"), "--root", str(project), "-f", "json", "--window", "2",
            "--overlap", "0", "--aggregate", "vote", "-k", "3", "--no-music-gate")  # (a test tone: not music)
    assert r.exit_code == 0, r.output
    probs = [t["prob"] for t in json.loads(r.stdout)["top_k"]]
    # 3 segments of 2 s (the last end-aligned): vote fractions are multiples of 1/3
    assert all(abs(p * 3 - round(p * 3)) < 1e-5 for p in probs) and sum(probs) == pytest.approx(1.0, abs=1e-5)


def test_models_lists_cards_metrics_and_default(project):
    (project / "models" / "junk").mkdir()
    r = run("models", "--root", str(project), "--json")
    assert r.exit_code == 0
    recs = {x["name"]: x for x in map(json.loads, r.stdout.strip().splitlines())}
    assert recs["tempo_genre"]["kind"] == "deep" and recs["tempo_genre"]["test"]["accuracy"] == 0.9
    assert recs["tempo_genre"]["labels"] == ["blues", "classical", "rock"]
    assert recs["cnn2d"]["test"] is None and recs["cnn2d"]["created"]
    assert "error" in recs["junk"]
    r = run("models", "--root", str(project))
    assert r.exit_code == 0 and "tempo_genre *" in r.stdout and "0.900" in r.stdout


def test_installed_entry_point_runs_without_traceback(project):
    """The real `mgr` process: one-line errors, exit code 1 when one input fails."""
    cmd = [sys.executable, "-c", "from mgr.cli import main; main()", "predict", str(project / "audio" / "a.wav"),
           str(project / "missing.wav"), "--root", str(project), "-f", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip() == f"error: {project / 'missing.wav'}: no such file or directory"
    assert len(p.stdout.strip().splitlines()) == 2


_BLAS_PROBE = """
import json, sys
from mgr.cli import main
sys.argv = ["mgr", "predict", sys.argv[1], "--root", sys.argv[2], "-f", "json", "-q"]
try:
    main()
except SystemExit:
    pass
from threadpoolctl import threadpool_info
print(json.dumps([p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"]))
"""


@pytest.mark.parametrize("user", [None, "2"])
def test_predict_runs_one_openblas_thread_unless_the_user_set_it(project, user):
    """Idle OpenBLAS threads spun through predict's few BLAS calls (+20-40 % CPU): predict loads
    NumPy with one, and keeps what the user asked for."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if user:
        env["OPENBLAS_NUM_THREADS"] = user
    p = subprocess.run([sys.executable, "-c", _BLAS_PROBE, str(project / "audio" / "a.wav"), str(project)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-500:]
    threads = json.loads(p.stdout.strip().splitlines()[-1])
    assert threads and set(threads) == {int(user or 1)}


def test_progress_bar_on_stderr_for_many_files(project, monkeypatch):
    for i in range(3):
        _clip(project / "audio" / f"x{i}.wav", seconds=1.2, seed=10 + i)
    monkeypatch.setenv("MGR_PROGRESS", "1")  # CliRunner's stderr is not a TTY
    r = run("predict", str(project / "audio"), "--root", str(project), "-f", "json")
    assert r.exit_code == 0
    assert len(r.stdout.strip().splitlines()) == 5
    assert "predict (tiny_tempo)" in r.stderr and "5/5" in r.stderr
    r = run("predict", str(project / "audio" / "a.wav"), "--root", str(project), "-f", "json")
    assert r.stderr == ""  # one file: no bar


@pytest.mark.slow  # builds the built-in model from the musicnn wheel once per session (~10 s)
def test_builtin_musicnn_tagger_needs_no_training(tmp_path):
    """`mgr predict --model musicnn-msd` in a folder with no models/ at all: the 50 pretrained
    tags with scores (genre null), through the ONNX runtime, and `mgr models` lists the built-ins."""
    clip = _clip(tmp_path / "song.wav", seconds=7.0, seed=4)
    r = run("predict", str(clip), "--root", str(tmp_path), "--model", "musicnn-msd", "--format", "json",
            "--top-k", "5", "--tag-threshold", "0.0", "--no-music-gate")  # (a test tone: not music)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["genre"] is None and len(out["top_k"]) == 5
    scores = [t["score"] for t in out["tags"]]
    assert len(scores) == 50 and scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    from mgr.pretrained.musicnn import MSD_LABELS

    assert {t["label"] for t in out["tags"]} == set(MSD_LABELS)
    assert [t["label"] for t in out["top_k"]] == [t["label"] for t in out["tags"][:5]]
    r = run("predict", str(clip), "--root", str(tmp_path), "--model", "musicnn-mtt", "--format", "csv", "--no-music-gate")
    assert r.exit_code == 0, r.output
    row = list(csv.DictReader(io.StringIO(r.stdout)))[0]
    assert row["genre"] == "" and row["top_k"].count(":") == 3
    r = run("models", "--root", str(tmp_path), "--json")
    recs = {x["name"]: x for x in map(json.loads, r.stdout.strip().splitlines())}
    assert recs["musicnn-msd"]["kind"] == "pretrained" and len(recs["musicnn-msd"]["labels"]) == 50
    assert "classical" in recs["musicnn-mtt"]["labels"]
    r = run("predict", str(clip), "--root", str(tmp_path), "--model", "musicnn-xyz")
    assert r.exit_code == 3 and "built in: musicnn-msd, musicnn-mtt" in r.stderr


def test_builtin_tagger_card_with_a_replaced_onnx_is_refused(tmp_path, monkeypatch):
    """A built-in model's card is hash-checked like any artifact's: a replaced model.onnx is refused
    in one line before onnxruntime reads it."""
    from mgr.errors import ArtifactError
    from mgr.inference.predictors import load_predictor

    d = tmp_path / "tagger"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"not onnx")
    from mgr.pretrained.musicnn import FRONTEND, MSD_LABELS

    (d / "model.json").write_text(json.dumps({
        "name": "musicnn_msd", "kind": "pretrained", "labels": list(MSD_LABELS), "tag_vocab": list(MSD_LABELS),
        "frontend": dict(FRONTEND), "window_frames": 187, "outputs": ["taggram", "penultimate"],
        "onnx_file": "model.onnx", "onnx_sha256": "0" * 64}))
    with pytest.raises(ArtifactError, match="sha256"):
        load_predictor(d)


def _assert_same_json(a, b, where: str = "") -> None:
    """``a == b``, floats within 1e-5 (everything else exact)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == pytest.approx(b, abs=1e-5), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_json(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("model", ["cnn2d", "tempo_genre"])
def test_jobs_give_the_same_answers_in_input_order(project, model):
    """Many files on worker processes: the same JSON lines, in input order, as in-process; a bad
    file is still one error line and does not stop the others."""
    for i in range(6):
        _clip(project / "audio" / f"c{i}.wav", seconds=1.5 + 0.25 * i, seed=10 + i)
    (project / "audio" / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    args = ("predict", str(project / "audio"), "--root", str(project), "-m", model, "-f", "json", "-q")
    one, two = run(*args, "--jobs", "1"), run(*args, "--jobs", "2")
    assert one.exit_code == two.exit_code == 1
    # the same lines in the same order; probabilities equal up to float summation order (the
    # workers run onnxruntime on one thread, this process on several)
    lines1, lines2 = one.stdout.strip().splitlines(), two.stdout.strip().splitlines()
    assert len(lines1) == len(lines2) == 9
    for a, b in zip(lines1, lines2):
        _assert_same_json(json.loads(a), json.loads(b))
    assert one.stderr.count("error:") == two.stderr.count("error:") == 1
    assert run(*args, "--jobs", "-1").exit_code == 2
