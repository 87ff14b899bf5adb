"""`mgr predict` against hostile inputs: implausible headers, non-finite or absurd options,
non-UTF-8 and control characters in file names, NaN model outputs, model names escaping
models/. Each test reproduces one case and checks the one-line error / strict output."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mgr.cli import app
from mgr.errors import ArtifactError, AudioError
from mgr.inference.catalog import best_model_name, list_models, resolve_model
from mgr.inference.inputs import UsageError, check_file
from mgr.inference.output import Prediction, display_text, to_json_line
from mgr.inference.predictors import load_predictor
from mgr.inference.streaming import spectrogram_frames

FIX = Path(__file__).resolve().parent / "data" / "predict"
SR = 22050


@pytest.fixture(autouse=True)
def _test_tones_are_not_music(monkeypatch):
    """The inputs here are beeping test tones, which the no-music gate (tests/test_gate.py) rightly
    refuses; these tests are about other mechanics, so the gate is off unless a test turns it on."""
    from mgr.inference.predictors import Predictor

    monkeypatch.setattr(Predictor, "GATE_DEFAULT", False)


def _tone(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 330 * t) * (0.3 + (np.mod(t, 0.5) < 0.03)) + 0.01 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def _wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _raw_wav(sr: int, data: np.ndarray, channels: int = 1) -> bytes:
    """A PCM16 WAV whose header says ``sr`` Hz (libsndfile would refuse to write some of these)."""
    raw = data.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, sr, sr * channels * 2, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def one_error_line(stderr: str) -> str:
    lines = stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def strict_json(line: str) -> dict:
    """Parse as a strict RFC 8259 parser would: no NaN/Infinity, UTF-8, no lone surrogates."""
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    line.encode("utf-8", "strict")
    obj = json.loads(line, parse_constant=no_constants)

    def walk(o):
        if isinstance(o, str):
            o.encode("utf-8", "strict")  # raises on a lone surrogate ("\udcff" escapes)
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(k)
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(obj)
    return obj


@pytest.fixture
def project(tmp_path):
    (tmp_path / "models").mkdir()
    shutil.copytree(FIX / "tiny_cnn", tmp_path / "models" / "cnn2d")
    shutil.copytree(FIX / "tiny_tempo", tmp_path / "models" / "tempo_genre")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "summary.json").write_text(
        json.dumps({"models": {"cnn2d": {"accuracy": 0.5}, "tempo_genre": {"accuracy": 0.9}}}))
    (tmp_path / "ok.wav").write_bytes(_wav_bytes(_tone(2.0, seed=1)))
    return tmp_path


# ------------------------------------------------------------- 5. implausible headers
def test_one_hz_header_is_refused_at_once_and_others_still_predicted(project):
    """A 400 KB WAV whose header says 1 Hz (55 h nominal) used to run for minutes at ~550 MB."""
    bad = project / "one_hz.wav"
    bad.write_bytes(_raw_wav(1, (np.random.default_rng(0).standard_normal(200_000) * 3000)))
    assert 390_000 < bad.stat().st_size < 410_000
    t0 = time.monotonic()
    r = run("predict", str(bad), str(project / "ok.wav"), "--root", str(project), "-f", "json")
    assert time.monotonic() - t0 < 20
    assert r.exit_code == 1, r.output
    line = one_error_line(r.stderr)
    assert line == (f"error: {bad}: implausible sample rate 1 Hz in the header (accepted: 1000..384000 Hz)")
    out = [strict_json(x) for x in r.stdout.strip().splitlines()]
    assert "error" in out[0] and out[1]["genre"]
    with pytest.raises(AudioError, match="implausible sample rate 1 Hz"):
        check_file(bad)
    from mgr.audio.decode import stream_blocks

    with pytest.raises(AudioError, match="implausible sample rate"):
        next(stream_blocks(bad, SR))
    hi = project / "hi.wav"
    hi.write_bytes(_raw_wav(400_000, np.zeros(1000)))
    with pytest.raises(AudioError, match="implausible sample rate 400000 Hz"):
        check_file(hi)


def test_max_duration_cap_from_the_header_and_while_decoding(project):
    long = project / "long.wav"
    long.write_bytes(_wav_bytes(_tone(3.0)))
    r = run("predict", str(long), "--root", str(project), "--max-duration", "2")
    assert r.exit_code == 1
    assert one_error_line(r.stderr) == f"error: {long}: too long (3.0 s declared by the header; --max-duration is 2.0 s)"
    r = run("predict", str(long), "--root", str(project), "--max-duration", "3.5", "-f", "json")
    assert r.exit_code == 0 and r.stderr == ""
    with pytest.raises(AudioError, match=r"too long \(5:00:00 declared by the header; --max-duration is 4:00:00\)"):
        bigger = project / "five_hours.wav"  # a valid 5 h header (sparse: 1 kHz, mostly unwritten)
        n = 5 * 3600 * 1000
        hdr = _raw_wav(1000, np.zeros(0))[:-4] + struct.pack("<I", 2 * n)
        with open(bigger, "wb") as f:
            f.write(hdr)
            f.truncate(len(hdr) + 2 * n)
        check_file(bigger, 4 * 3600.0)
    # a header that under-declares is caught while decoding (the budget counts decoded samples)
    from mgr.inference.inputs import _Budget

    fe = json.loads((FIX / "tiny_cnn" / "model.json").read_text())["frontend"]
    with pytest.raises(AudioError, match="too long .more than --max-duration"):
        list(spectrogram_frames(long, fe, block_s=0.5, budget=_Budget(1.0, None)))


def test_timeout_per_file(project):
    r = run("predict", str(project / "ok.wav"), str(project / "ok.wav"), "--root", str(project),
            "--timeout", "1e-9", "-f", "json")
    assert r.exit_code == 1
    lines = r.stderr.strip().split("\n")
    assert lines == [f"error: {project / 'ok.wav'}: gave up after --timeout 1e-09 s"] * 2


def test_stream_blocks_bound_samples_per_read(tmp_path, monkeypatch):
    import mgr.audio.decode as A

    p = tmp_path / "wide.wav"
    sf.write(p, np.zeros((SR, 8), np.float32), SR)
    monkeypatch.setattr(A, "MAX_BLOCK_SAMPLES", 8000)
    sizes = [len(b) for b in A.stream_blocks(p, SR, block_s=10.0)]
    assert max(sizes) <= 1000 and sum(sizes) == SR


# --------------------------------------------------------------- 6. numeric options
BAD_OPTIONS = [
    ("--window", "nan"), ("--window", "inf"), ("--window", "-inf"), ("--window", "1e12"), ("--window", "0.01"),
    ("--window", "0"), ("--window", "abc"), ("--overlap", "nan"), ("--overlap", "inf"), ("--overlap", "0.99"),
    ("--overlap", "-0.1"), ("--top-k", "0"), ("--top-k", "99999999999999999999999"), ("--top-k", "1e3"),
    ("--tag-threshold", "nan"), ("--tag-threshold", "1.5"), ("--tag-threshold", "-inf"),
    ("--max-duration", "nan"), ("--max-duration", "0"), ("--max-duration", "inf"),
    ("--timeout", "0"), ("--timeout", "nan"), ("--timeout", "-1"),
    ("--aggregate", "median"), ("--format", "xml"), ("--no-such-option", "1"),
]


@pytest.mark.parametrize("opt,value", BAD_OPTIONS)
def test_every_bad_numeric_option_is_exit_2_with_one_line(project, opt, value):
    r = run("predict", str(project / "ok.wav"), "--root", str(project), opt, value)
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)  # no traceback
    line = one_error_line(r.stderr)
    assert opt in line, line
    assert r.stdout == ""
    # refused before the model is even looked up
    r = run("predict", str(project / "ok.wav"), "--root", str(project), "--model", "nope", opt, value)
    assert r.exit_code == 2


def test_missing_path_is_one_line_exit_2(project):
    r = run("predict", "--root", str(project))
    assert r.exit_code == 2 and "Missing argument" in one_error_line(r.stderr)


@pytest.mark.parametrize("kw", [
    {"window_s": float("nan")}, {"window_s": float("inf")}, {"window_s": 1e12}, {"window_s": 0.01},
    {"overlap": float("nan")}, {"overlap": 0.999}, {"top_k": 10**30}, {"top_k": 2.5}, {"top_k": True},
    {"tag_threshold": float("nan")}, {"max_duration_s": float("nan")}, {"time_limit_s": float("inf")},
])
def test_predictor_api_checks_the_same_options(kw):
    with pytest.raises(UsageError):
        load_predictor(FIX / "tiny_cnn", **kw)


def test_valid_extremes_are_accepted(project):
    r = run("predict", str(project / "ok.wav"), "--root", str(project), "-f", "json", "--top-k", "1000",
            "--overlap", "0.95", "--tag-threshold", "0", "--window", "600")
    assert r.exit_code == 0, r.output
    out = strict_json(r.stdout)
    assert len(out["top_k"]) == 3  # every label, no more
    assert "padded with silence" in r.stderr


# ------------------------------------------------------------ 7. non-UTF-8 file names
def _bytes_name(dirpath: Path, name: bytes, data: bytes) -> str:
    raw = os.path.join(os.fsencode(dirpath), name)
    with open(raw, "wb") as f:
        f.write(data)
    return os.fsdecode(raw)  # what Python makes of such a name in argv / os.listdir


def test_non_utf8_name_is_predicted_and_printed_losslessly(project):
    d = project / "odd"
    d.mkdir()
    p = _bytes_name(d, b"song\xff.wav", _wav_bytes(_tone(2.0, seed=3)))
    want_bytes = os.fsencode(p)
    r = run("predict", p, "--root", str(project), "-f", "json")
    assert r.exit_code == 0, r.output
    out = strict_json(r.stdout)
    assert out["path"] == str(d) + "/song\\xff.wav" and out["genre"]
    assert base64.b64decode(out["path_bytes_b64"]) == want_bytes
    # a directory holding it, and CSV
    r = run("predict", str(d), "--root", str(project), "-f", "csv")
    assert r.exit_code == 0, r.output
    r.stdout.encode("utf-8", "strict")
    row = list(csv.DictReader(io.StringIO(r.stdout)))[0]
    assert row["path"] == str(d) + "/song\\xff.wav" and row["genre"]
    assert base64.b64decode(row["path_bytes_b64"]) == want_bytes
    # a UTF-8 name keeps the plain schema (no extra field)
    r = run("predict", str(project / "ok.wav"), "--root", str(project), "-f", "json")
    assert set(strict_json(r.stdout)) == {"path", "genre", "top_k", "tempo_bpm", "tags"}


def test_non_utf8_name_in_a_real_process(project):
    """argv as raw bytes (what a shell passes), error lines and JSON through real pipes."""
    good = _bytes_name(project, b"caf\xe9.wav", _wav_bytes(_tone(2.0, seed=5)))
    bad = _bytes_name(project, b"bad\xfe.wav", b"not audio at all" * 100)
    cmd = [os.fsencode(sys.executable), b"-c", b"from mgr.cli import main; main()", b"predict",
           os.fsencode(good), os.fsencode(bad), b"--root", os.fsencode(project), b"-f", b"json"]
    pr = subprocess.run(cmd, capture_output=True, timeout=120)
    assert pr.returncode == 1
    err = pr.stderr.decode("utf-8", "strict")
    assert err == f"error: {project}/bad\\xfe.wav: not an audio file (format not recognised)\n"
    lines = [strict_json(x) for x in pr.stdout.decode("utf-8", "strict").splitlines()]
    assert lines[0]["path"] == f"{project}/caf\\xe9.wav" and lines[0]["genre"]
    assert base64.b64decode(lines[1]["path_bytes_b64"]) == os.fsencode(bad) and "error" in lines[1]


# --------------------------------------------------------- 8. non-finite model output
def _nan_on_first_call(pred):
    sess = pred.model.model.session
    real, calls = sess.run, []

    class Fake:
        def run(self, names, feeds):
            calls.append(1)
            outs = real(names, feeds)
            return [np.full_like(o, np.nan) for o in outs] if len(calls) == 1 else outs

        def __getattr__(self, k):
            return getattr(sess, k)

    pred.model.model.session = Fake()
    return pred


def test_nan_model_output_fails_that_file_only(project, monkeypatch):
    import mgr.inference.predictors as P

    real_load = P.load_predictor
    monkeypatch.setattr(P, "load_predictor", lambda *a, **k: _nan_on_first_call(real_load(*a, **k)))
    second = project / "second.wav"
    second.write_bytes(_wav_bytes(_tone(2.0, seed=9)))
    for fmt in ("json", "csv", "table"):
        r = run("predict", str(project / "ok.wav"), str(second), "--root", str(project), "-f", fmt)
        assert r.exit_code == 1, r.output
        line = one_error_line(r.stderr)
        assert line.startswith(f"error: {project / 'ok.wav'}: model output unusable (model.onnx: output ")
        assert "is not finite (NaN/inf)" in line
        if fmt == "json":
            first, ok = (strict_json(x) for x in r.stdout.strip().splitlines())
            assert "error" in first and ok["genre"]  # (strict_json refuses a bare NaN)
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(r.stdout)))
            assert rows[0]["error"] and rows[0]["prob"] == "" and float(rows[1]["prob"]) > 0


def test_huge_float_samples_are_a_per_file_error(project):
    """Float samples near 1e38 are finite but their power overflows: the spectrogram is refused."""
    huge = project / "huge.wav"
    sf.write(huge, np.full(2 * SR, 3e38, np.float32), SR, subtype="FLOAT")
    r = run("predict", str(huge), str(project / "ok.wav"), "--root", str(project), "-f", "json")
    assert r.exit_code == 1
    assert one_error_line(r.stderr) == f"error: {huge}: spectrogram is not finite (sample values out of range?)"
    assert [("error" in strict_json(x)) for x in r.stdout.strip().splitlines()] == [True, False]


def test_non_finite_tempo_is_null_with_a_reason(project, monkeypatch):
    import mgr.inference.streaming as P

    monkeypatch.setattr(P, "dsp_tempo_from_envelope", lambda *a, **k: float("nan"))
    r = run("predict", str(project / "ok.wav"), "--root", str(project), "-m", "cnn2d", "-f", "json")
    assert r.exit_code == 0, r.output
    out = strict_json(r.stdout)
    assert out["tempo_bpm"] is None and out["tempo_error"] == "tempo not estimated (dsp estimate was nan)"
    assert r.stderr.strip() == f"warning: {project / 'ok.wav'}: tempo not estimated (dsp estimate was nan)"


def test_json_output_is_always_strict():
    nan, inf = float("nan"), float("inf")
    res = Prediction("a\udcff.wav", "rock\udcfe", [("rock", nan), ("pop", inf)], inf, "dsp", [("x", -inf)])
    out = strict_json(to_json_line(res))
    assert out["top_k"] == [{"label": "rock", "prob": None}, {"label": "pop", "prob": None}]
    assert out["tempo_bpm"] is None and out["genre"] == "rock\\xfe" and out["path"] == "a\\xff.wav"


def test_models_json_stays_strict_with_nan_metrics(project):
    (project / "metrics" / "cnn2d.json").write_text('{"track": {"accuracy": NaN, "macro_f1": Infinity}}')
    recs = {r["name"]: r for r in list_models(project)}
    assert recs["cnn2d"]["test"] is None
    r = run("models", "--root", str(project), "--json")
    assert r.exit_code == 0
    for line in r.stdout.strip().splitlines():
        strict_json(line)


# ---------------------------------------------------------- 9. model names and files
def test_summary_key_cannot_leave_models(project):
    shutil.copytree(FIX / "tiny_tempo", project / "outside")
    (project / "metrics" / "summary.json").write_text(json.dumps(
        {"models": {"../outside": {"accuracy": 0.99}, "cnn2d": {"accuracy": 0.5}, "/abs": {"accuracy": 1.0}}}))
    assert best_model_name(project) == "cnn2d"
    assert resolve_model(None, project) == project / "models" / "cnn2d"
    (project / "metrics" / "summary.json").write_text(json.dumps({"models": {"../outside": {"accuracy": 0.99}}}))
    (project / "reports").mkdir()
    (project / "reports" / "leaderboard.md").write_text(
        "| model | accuracy |\n|---|---|\n| ../outside | 0.99 |\n| tempo_genre | 0.70 |\n")
    assert best_model_name(project) == "tempo_genre"
    r = run("predict", str(project / "ok.wav"), "--root", str(project), "-f", "json")
    assert r.exit_code == 0 and r.stderr == ""


def test_model_name_with_dotdot_or_symlink_out_of_models_is_refused(project, monkeypatch):
    shutil.copytree(FIX / "tiny_tempo", project / "outside")
    monkeypatch.chdir("/")  # "../outside" is no directory relative to the working directory
    for spec in ("../outside", "cnn2d/../../outside", "./../outside"):
        with pytest.raises(ArtifactError, match="not found"):
            resolve_model(spec, project)
        r = run("predict", str(project / "ok.wav"), "--root", str(project), "--model", spec)
        assert r.exit_code == 3 and "not found" in one_error_line(r.stderr)
    (project / "models" / "link").symlink_to(project / "outside")
    r = run("predict", str(project / "ok.wav"), "--root", str(project), "--model", "link")
    assert r.exit_code == 3 and "resolves outside" in one_error_line(r.stderr)
    # an explicit directory is still a directory
    assert resolve_model(str(project / "outside"), project) == project / "outside"


@pytest.mark.parametrize("victim", ["model.onnx", "model.keras"])
def test_replaced_deep_model_file_is_refused_in_one_line(project, victim):
    d = project / "models" / "cnn2d"
    # a valid file of the same kind, from another model: the card's sha256 no longer matches
    shutil.copy(FIX / "tiny_tempo" / victim, d / victim)
    r = run("predict", str(project / "ok.wav"), "--root", str(project), "--model", "cnn2d")
    assert r.exit_code == 3
    assert "does not match the sha256" in one_error_line(r.stderr) and r.stdout == ""


# ---------------------------------------------------- 10. control characters in names
def test_newline_and_escape_in_names_stay_on_one_line(project):
    bad = project / "bad\nname\x1b[31m.wav"
    bad.write_bytes(b"junk" * 50)
    good = project / "good\tone\n.wav"
    good.write_bytes(_wav_bytes(_tone(0.7, seed=2)))  # short: a warning line too
    r = run("predict", str(bad), str(good), "--root", str(project), "-f", "json")
    assert r.exit_code == 1
    lines = r.stderr.strip("\n").split("\n")
    assert lines[0] == f"error: {project}/bad\\nname\\x1b[31m.wav: not an audio file (format not recognised)"
    assert lines[1].startswith(f"warning: {project}/good\\tone\\n.wav: shorter than one window")
    assert len(lines) == 2
    out = [strict_json(x) for x in r.stdout.strip().splitlines()]
    assert out[0]["path"] == str(bad) and out[1]["path"] == str(good)  # JSON: the exact name


def test_rich_markup_in_names_is_printed_literally(project):
    odd = project / "[red]x[bold].wav"
    odd.write_bytes(_wav_bytes(_tone(2.0)))
    r = run("predict", str(odd), str(project / "[link=x]gone.wav"), "--root", str(project))
    assert r.exit_code == 1, r.output
    assert "[red]x[bold].wav" in r.stdout and "[link=x]gone.wav" in r.stdout


def test_display_text_escapes_every_control_character():
    assert display_text("a\nb\r\tc\x00\x7f\x9b\u2028\U000e0001\udcff") == "a\\nb\\r\\tc\\x00\\x7f\\x9b\\u2028\\U000e0001\\xff"
    assert display_text("plain é ü.wav") == "plain é ü.wav"


# ------------------------------------------------------------------ odd paths
def test_odd_paths_are_one_line_failures(project):
    fifo = project / "pipe.wav"
    os.mkfifo(fifo)
    long = project / ("x" * 300 + ".wav")
    r = run("predict", str(fifo), str(long), str(project / "ok.wav"), "--root", str(project), "-f", "json")
    assert r.exit_code == 1
    lines = r.stderr.strip().split("\n")
    assert lines[0] == f"error: {fifo}: not a regular file (a FIFO/named pipe)"
    assert lines[1] == f"error: {long}: cannot access (File name too long)"
    assert len(lines) == 2 and len(r.stdout.strip().splitlines()) == 3


@pytest.mark.parametrize("key,value", [("onnx_file", "../../etc/passwd"), ("model_file", "/abs/model.keras"),
                                       ("onnx_file", ".."), ("onnx_file", 3)])
def test_card_file_names_stay_inside_the_model_directory(project, key, value):
    """A card names its files inside its own directory only: a path out of it is refused in one line
    before anything is opened."""
    from mgr.cards import read_card
    from mgr.errors import ArtifactError

    d = project / "models" / "cnn2d"
    card = json.loads((d / "model.json").read_text())
    card[key] = value
    (d / "model.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match=f"{key} must be a file name inside"):
        read_card(d)
    r = run("predict", str(project / "audio"), "--root", str(project), "-m", "cnn2d")
    assert r.exit_code == 3 and r.stderr.strip().count("\n") == 0 and key in r.stderr
