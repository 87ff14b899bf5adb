"""Hardening: duplicates, NaN params, odd manifest paths, one genre, full disks, killed runs."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _fetch_helpers import write_tone

from mgr.data.fetch import fetch
from mgr.data.split import make_split
from mgr.data.tracks import load_rejected, load_tracks
from mgr.errors import (
    DataError,
    ParamsError,
    StorageError,
    run_reporting_user_errors,
    storage_error,
)
from mgr.io import atomic_path, clean_stale_temps, pid_alive
from mgr.params import params_from_dict

ROOT = Path(__file__).resolve().parent.parent


def _music_clip(path: Path, seed: int, seconds: float = 3.0, sr: int = 8000, gain: float = 1.0,
                fmt: str | None = None) -> Path:
    """Amplitude-modulated noise with a seeded envelope: a non-flat spectral envelope."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    env = np.repeat(rng.uniform(0.05, 1.0, 24), -(-n // 24))[:n]
    tone = np.sin(2 * np.pi * rng.uniform(200, 2000) * np.arange(n) / sr)
    y = (0.3 * env * (0.5 * rng.standard_normal(n) + tone) * gain).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(y, -1, 1) * 32767).astype(np.int16)  # identical samples in every container
    sf.write(path, pcm, sr, format=fmt, subtype="PCM_16")
    return path


def _folder_with_duplicates(tmp_path: Path) -> Path:
    src = tmp_path / "music"
    for g, base in (("blues", 0), ("rock", 100), ("jazz", 200)):
        for i in range(6):
            _music_clip(src / g / f"{g}.{i:05d}.wav", seed=base + i)
    # the same samples under another genre, re-encoded as FLAC (byte-different, sample-identical)
    _music_clip(src / "rock" / "copy_of_blues0.flac", seed=0, fmt="FLAC")
    # the same file twice under one genre
    _music_clip(src / "jazz" / "jazz.again.wav", seed=201)
    # a quieter copy: different samples, same envelope -> near duplicate
    _music_clip(src / "blues" / "blues.quiet.wav", seed=3, gain=0.5)
    return src


def _fetch(tmp_path: Path, src: Path, **data) -> tuple:
    p = params_from_dict({"data": {"source": "folder", "path": str(src), "workers": 1, **data}})
    res = fetch(p, tmp_path / "raw", progress=False)
    return res, load_tracks(res.dataset_dir), load_rejected(res.dataset_dir)


# ------------------------------------------------------------------------ 1. duplicates
def test_duplicates_are_fingerprinted_reported_and_kept_together(tmp_path):
    res, tracks, rej = _fetch(tmp_path, _folder_with_duplicates(tmp_path))
    t = tracks.set_index("track_id")
    assert t.loc["blues.00000", "fingerprint"] == t.loc["copy_of_blues0", "fingerprint"] != ""
    assert t.loc["jazz.00001", "fingerprint"] == t.loc["jazz.again", "fingerprint"]
    assert t.loc["blues.00003", "fingerprint"] != t.loc["blues.quiet", "fingerprint"]
    assert t.loc["blues.00000", "dup_group"] == t.loc["copy_of_blues0", "dup_group"] == "blues.00000"
    assert t.loc["blues.00003", "dup_group"] == t.loc["blues.quiet", "dup_group"] == "blues.00003"
    assert t.loc["blues.00001", "dup_group"] == ""
    m = res.metrics()["duplicates"]
    assert m == {"policy": "group", "exact_sets": 2, "exact_tracks": 4, "conflicting_sets": 1, "near_pairs": 1,
                 "groups": 3, "dropped": 0}
    dup = pd.read_csv(res.dataset_dir / "duplicates.csv", dtype=str)
    assert set(dup["track_id"]) == {"blues.00000", "copy_of_blues0", "jazz.00001", "jazz.again",
                                    "blues.00003", "blues.quiet"}
    assert set(dup.loc[dup.track_id == "blues.quiet", "kind"]) == {"near"}
    assert len(rej) == 0  # policy group drops nothing
    from mgr.data.validation import validate_split

    for strategy in ("stratified", "kfold", "group"):
        p = params_from_dict({"split": {"strategy": strategy, "k": 3}})
        split = make_split(tracks, p.split).set_index("track_id")
        unit = "fold" if strategy == "kfold" else "split"
        for a, b in (("blues.00000", "copy_of_blues0"), ("jazz.00001", "jazz.again"), ("blues.00003", "blues.quiet")):
            assert split.loc[a, unit] == split.loc[b, unit], (strategy, a, b)
        validate_split(split.reset_index(), tracks, grouped=strategy != "stratified", report_dir=None)


def test_duplicate_policies_drop_conflicts_and_drop(tmp_path):
    src = _folder_with_duplicates(tmp_path)
    res, tracks, rej = _fetch(tmp_path / "a", src, duplicates="drop_conflicts")
    r = rej.set_index("track_id")
    assert {"blues.00000", "copy_of_blues0"} <= set(r.index) and "jazz.again" not in r.index
    assert "several genres (blues, rock)" in r.loc["copy_of_blues0", "reason"]
    assert res.metrics()["duplicates"]["dropped"] == 2
    assert tracks.set_index("track_id").loc["jazz.again", "dup_group"] == "jazz.00001"
    res, tracks, rej = _fetch(tmp_path / "b", src, duplicates="drop")
    r = rej.set_index("track_id")
    assert r.loc["jazz.again", "reason"].startswith("exact duplicate of jazz.00001")
    assert "jazz.00001" in set(tracks.track_id) and res.metrics()["duplicates"]["dropped"] == 3
    # its only copy gone, jazz.00001 is in no duplicate set any more
    assert tracks.set_index("track_id").loc["jazz.00001", "dup_group"] == ""


def test_split_validation_refuses_a_duplicate_in_two_parts():
    from mgr.data.validation import validate_split

    tracks = pd.DataFrame({"track_id": ["a", "b", "c", "d"], "genre": ["x", "y", "x", "y"],
                           "fingerprint": ["f1", "f1", "f2", "f3"]})
    split = pd.DataFrame({"track_id": ["a", "b", "c", "d"], "split": ["train", "test", "train", "test"]})
    with pytest.raises(DataError, match="split_duplicates_one_split"):
        validate_split(split, tracks, report_dir=None)
    validate_split(split, tracks, duplicates=False, report_dir=None)  # predefined: not checked


def test_predefined_split_warns_about_straddling_duplicates():
    from mgr.data.split import SplitWarning

    tracks = pd.DataFrame({"track_id": ["a", "b", "c", "d"], "genre": ["x", "y", "x", "y"],
                           "fingerprint": ["f1", "f1", "f2", "f3"], "source_split": ["train", "test", "train", "test"]})
    with pytest.warns(SplitWarning, match="same audio in two parts"):
        make_split(tracks, params_from_dict({"data": {"source": "fma"}, "split": {"strategy": "predefined"}}).split)


# ---------------------------------------------------------------------- 2. NaN / inf params
@pytest.mark.parametrize("key,value", [
    ("split.test_size", float("nan")),
    ("data.synthetic.duration_s", float("nan")),
    ("data.min_duration_s", float("inf")),
    ("train.learning_rate", float("nan")),
    ("ml.xgboost.learning_rate", float("nan")),
    ("dl.cnn2d.learning_rate", float("nan")),
    ("evaluate.tag_threshold", float("nan")),
    ("spectrogram.fmax", float("inf")),
    ("ml.svm.gamma", float("nan")),
    ("ml.svm.grid", {"C": [1.0, float("nan")]}),
])
def test_nan_and_inf_params_are_refused(key, value):
    data: dict = {}
    cur = data
    *head, last = key.split(".")
    for k in head:
        cur = cur.setdefault(k, {})
    cur[last] = value
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        params_from_dict(data)


@pytest.mark.parametrize("spec,match", [
    ({"spectrogram": {"fmin": 5000.0, "fmax": 4000.0}}, "fmin 5000 Hz must be below fmax 4000"),
    ({"spectrogram": {"fmin": 11025.0}}, "fmin 11025 Hz must be below fmax 11025"),
    ({"spectrogram": {"fmax": 16000.0}}, "fmax 16000 Hz is above the Nyquist frequency 11025"),
    ({"spectrogram": {"preset": "choi", "fmax": 8000.0}}, "Nyquist frequency 6000 Hz of the choi"),
    ({"audio": {"sample_rate": 16000}, "spectrogram": {"fmax": 11025.0}}, "Nyquist frequency 8000"),
])
def test_inconsistent_frontend_params_are_refused(spec, match):
    with pytest.raises(ParamsError, match=match):
        params_from_dict(spec)
    params_from_dict({"spectrogram": {"fmin": 30.0, "fmax": 8000.0}})  # a consistent pair passes


def test_mgr_params_says_one_line_exit_2_for_nan(tmp_path):
    (tmp_path / "params.yaml").write_text("split:\n  test_size: .nan\n")
    r = subprocess.run([sys.executable, "-c", "from mgr.cli import main; main()", "params"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: params: split.test_size: nan is not a finite number "
                                             "(NaN and inf are not allowed)"]


# ----------------------------------------------------------------- 3. manifest paths
def test_manifest_paths_outside_warn_and_special_files_are_refused(tmp_path, capsys):
    inside = tmp_path / "lib"
    outside = tmp_path / "elsewhere"
    write_tone(inside / "a.wav", freq=300)
    write_tone(inside / "b.wav", freq=350)
    write_tone(outside / "c.wav", freq=400)
    write_tone(outside / "d.wav", freq=450)
    os.mkfifo(inside / "pipe.wav")
    (inside / "dir.wav").mkdir()
    rows = [("a.wav", "blues"), ("b.wav", "rock"), ("../elsewhere/c.wav", "blues"), (str(outside / "d.wav"), "rock"),
            ("pipe.wav", "rock"), ("dir.wav", "rock"), ("/etc/passwd", "rock"), ("/dev/zero", "rock")]
    pd.DataFrame(rows, columns=["path", "genre"]).to_csv(inside / "manifest.csv", index=False)
    res, tracks, rej = _fetch(tmp_path, inside / "manifest.csv")  # a FIFO read would hang here
    assert set(tracks.track_id) == {"a", "b", "c", "d"}
    reasons = dict(zip(rej["track_id"], rej["reason"]))
    assert reasons["pipe"] == "not a regular file (fifo): not read"
    assert reasons["dir"] == "not a regular file (directory): not read"
    assert reasons["passwd"].startswith("not an audio file (extension 'none'")
    assert reasons["zero"] == "not a regular file (character device): not read"
    assert res.metrics()["paths_outside_folder"] == 2
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "2 file(s) lie outside" in err


# ------------------------------------------------------------------- 4. one genre
def test_single_genre_fails_at_fetch_and_split(tmp_path):
    src = tmp_path / "music"
    for i in range(3):
        write_tone(src / "blues" / f"b{i}.wav", freq=300 + 50 * i)
    with pytest.raises(DataError, match=r"only 1 genre \(blues\) among the 3 usable track\(s\).*at least 2"):
        _fetch(tmp_path, src)
    assert not (tmp_path / "raw" / "folder").exists()
    tracks = pd.DataFrame({"track_id": ["a", "b", "c"], "genre": ["x"] * 3})
    with pytest.raises(DataError, match="at least 2"):
        make_split(tracks, params_from_dict({}).split)


# ------------------------------------------------------------------- 11. full disk
def test_atomic_write_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "data.h5"
    with pytest.raises(StorageError) as ei:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert str(ei.value) == f"disk full (no space left on device): cannot write {target} (free some space or write elsewhere)"
    assert list((tmp_path / "out").iterdir()) == []


def test_hdf5_wrapped_enospc_is_recognised(tmp_path):
    target = tmp_path / "spectrograms.h5"
    with pytest.raises(StorageError, match=f"disk full .*cannot write {target}"):
        with atomic_path(target) as tmp:
            raise RuntimeError(  # h5py's text around the errno (the file name is the temporary)
                f"Can't synchronously write data (file write failed: time = Thu, filename = '{tmp}', "
                "file descriptor = 7, errno = 28, error message = 'No space left on device', buf = 0x5)")
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_loses_the_errno_on_a_full_disk_is_recognised(tmp_path, monkeypatch):
    import mgr.io

    flac_error = RuntimeError("Error : problem with initialization of the flac decoder.")  # libsndfile, real
    with pytest.raises(RuntimeError):  # plenty of space: a genuine failure stays a failure
        with atomic_path(tmp_path / "a.flac"):
            raise flac_error
    monkeypatch.setattr(mgr.io, "free_bytes_if_nearly_full", lambda p: 0)
    with pytest.raises(StorageError, match=f"disk full .*cannot write {tmp_path / 'a.flac'} .*0 bytes were left"):
        with atomic_path(tmp_path / "a.flac"):
            raise flac_error
    assert list(tmp_path.iterdir()) == []


def test_read_only_directory_names_the_output_not_the_temporary(tmp_path, monkeypatch):
    import tempfile

    def ro(prefix, dir, suffix):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, prefix + "k2j3" + suffix))

    monkeypatch.setattr(tempfile, "mkstemp", lambda prefix, dir, suffix: ro(prefix, dir, suffix))
    with pytest.raises(StorageError) as ei:
        with atomic_path(tmp_path / "spectrograms.h5"):
            pass
    assert str(ei.value) == f"read-only file system: cannot write {tmp_path / 'spectrograms.h5'}"


@pytest.mark.parametrize("exc,first", [
    (OSError(errno.ENOSPC, "No space left on device", "data/x.csv"), "error: disk full (no space left on device): cannot write data/x.csv"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "x"), "error: disk quota exceeded: cannot write x"),
    (OSError(errno.EROFS, "Read-only file system", "models/m"), "error: read-only file system: cannot write models/m"),
    (PermissionError(errno.EACCES, "Permission denied", "reports/r.json"), "error: permission denied: cannot write reports/r.json"),
])
def test_run_reporting_turns_storage_errors_into_one_line(exc, first, capsys, monkeypatch):
    import mgr.errors

    monkeypatch.setattr(mgr.errors, "_storage_exit", sys.exit)  # the real one is os._exit

    def main():
        try:
            raise exc
        except OSError as e:  # wrapped, as a pool re-raises a worker's exception
            raise RuntimeError("worker failed") from e

    with pytest.raises(SystemExit) as ei:
        run_reporting_user_errors(main)
    assert ei.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(first)


def test_other_errors_still_raise():
    with pytest.raises(ValueError):
        run_reporting_user_errors(lambda: (_ for _ in ()).throw(ValueError("a bug")))
    assert storage_error(OSError(errno.ENOENT, "No such file")) is None


def test_fetch_on_a_full_disk_cleans_up(tmp_path, monkeypatch):
    import soundfile as sf

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sf, "write", full)  # forked pool workers inherit the patch
    p = params_from_dict({"data": {"source": "synthetic", "workers": 2, "inject_corrupt": 0,
                                   "synthetic": {"clips_per_genre": 1, "duration_s": 1.0}}})
    with pytest.raises(StorageError, match="disk full"):
        fetch(p, tmp_path / "raw", progress=False)
    assert list((tmp_path / "raw").iterdir()) == []


# ------------------------------------------------------------------ 12. killed runs
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


_POOL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {src!r})
    from pathlib import Path

    def job(j):
        Path({out!r}, f"{{os.getpid()}}.pid").write_text("")
        time.sleep(120)
        return j

    if __name__ == "__main__":
        kind = sys.argv[1]
        if kind == "run_parallel":
            from mgr.features.extract import run_parallel
            run_parallel(job, iter(range(4)), 4, 2, lambda r: None, "x", False)
        else:
            from mgr.io import process_pool
            with process_pool(2) as ex:
                list(ex.map(job, range(4)))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("kind", ["run_parallel", "process_pool"])
def test_pool_workers_die_with_a_killed_parent(tmp_path, kind):
    out = tmp_path / "pids"
    out.mkdir()
    script = tmp_path / "stage.py"
    script.write_text(_POOL_SCRIPT.format(src=str(ROOT / "src"), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script), kind])
    try:
        deadline = time.time() + 60
        while len(list(out.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.05)
        pids = [int(f.stem) for f in out.iterdir()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 5
        while any(_alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids)
    finally:
        proc.kill()
        for f in out.iterdir():
            try:
                os.kill(int(f.stem), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not pid_alive(p.pid)
    return p.pid


def test_stale_temps_of_dead_processes_are_removed_at_the_next_write(tmp_path):
    dead = _dead_pid()
    stale_file = tmp_path / f".spectrograms.h5.tmp-{dead}-abc123.h5"
    stale_file.write_bytes(b"half")
    stale_dir = tmp_path / f".synthetic.tmp-{dead}-xyz"
    (stale_dir / "audio").mkdir(parents=True)
    live = tmp_path / f".spectrograms.h5.tmp-{os.getpid()}-live.h5"  # a run in progress: untouched
    live.write_bytes(b"busy")
    legacy_old = tmp_path / ".spectrograms.h5.tmp-k3j4h5"  # written before PIDs were encoded
    legacy_old.write_bytes(b"old")
    os.utime(legacy_old, (time.time() - 3 * 86400,) * 2)
    legacy_new = tmp_path / ".spectrograms.h5.tmp-n3w"
    legacy_new.write_bytes(b"new")
    with atomic_path(tmp_path / "spectrograms.h5") as tmp:
        assert f".tmp-{os.getpid()}-" in tmp.name
        tmp.write_bytes(b"whole")
    assert not stale_file.exists() and not legacy_old.exists()
    assert live.exists() and legacy_new.exists() and stale_dir.exists()  # other outputs' temps: their turn
    assert clean_stale_temps(tmp_path / "synthetic") == [stale_dir] and not stale_dir.exists()


def test_fetch_removes_a_killed_fetch_temp_dir_but_not_a_running_one(tmp_path):
    from mgr.data.fetch import _clean_stale

    root = tmp_path / "raw"
    dead = root / f".synthetic.tmp-{_dead_pid()}-a"
    running = root / f".synthetic.tmp-{os.getpid()}-b"
    dead.mkdir(parents=True)
    running.mkdir()
    _clean_stale(root, "synthetic")
    assert not dead.exists() and running.exists()


# ------------------------------------------------------- 13. unwritable reports dir
def test_unwritable_validation_report_is_one_line(tmp_path, monkeypatch):
    from mgr.data import validation

    tracks = pd.DataFrame({"track_id": ["a"], "path": ["/x.wav"], "genre": ["blues"], "duration_s": [2.0],
                           "sample_rate": [22050], "channels": [1]})
    reports = tmp_path / "reports" / "validation"
    reports.mkdir(parents=True)
    if os.geteuid() != 0:  # root ignores permission bits: simulate the refusal instead
        reports.chmod(0o555)
    else:
        real = Path.write_text

        def refuse(self, *a, **k):
            if str(self).startswith(str(reports)):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "write_text", refuse)
    try:
        with pytest.raises(StorageError) as ei:
            validation.validate_tracks(tracks, report_dir=reports)
    finally:
        reports.chmod(0o755)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"cannot write the validation report {reports / 'tracks.json'}")
    assert "permission denied" in msg
    assert list(reports.iterdir()) == []
