"""The fetch stage script and the atomicity of fetch (an interrupted fetch leaves nothing complete-looking)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from _fetch_helpers import write_corrupt, write_tone

import mgr.data.probe as probe_mod
from mgr.data.fetch import fetch
from mgr.data.tracks import load_tracks
from mgr.params import params_from_dict

ROOT = Path(__file__).resolve().parent.parent


def _music(tmp_path: Path) -> Path:
    src = tmp_path / "music"
    for g in ("blues", "rock"):
        for i in range(2):
            write_tone(src / g / f"{g}.0000{i}.wav", seconds=1.2, freq=300 + 50 * i)
    write_corrupt(src / "rock" / "rock.00009.wav")
    return src


def _load_stage():
    spec = importlib.util.spec_from_file_location("fetch_stage", ROOT / "stages" / "fetch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_stage_writes_metrics_and_validates(tmp_path):
    src = _music(tmp_path)
    pf = tmp_path / "params.yaml"
    pf.write_text(yaml.safe_dump({"data": {"source": "folder", "path": str(src), "workers": 1}}))
    stage = _load_stage()
    metrics = stage.main(params_file=pf, root=tmp_path / "raw", metrics_file=tmp_path / "metrics" / "fetch.json",
                         report_dir=tmp_path / "reports", progress=False)
    on_disk = json.loads((tmp_path / "metrics" / "fetch.json").read_text())
    assert on_disk == metrics
    assert {k: metrics[k] for k in ("source", "n_tracks", "n_rejected", "n_per_genre")} == {
        "source": "folder", "n_tracks": 4, "n_rejected": 1, "n_per_genre": {"blues": 2, "rock": 2}}
    # the same tone is filed under blues and rock: two exact duplicate sets with conflicting labels
    assert metrics["duplicates"] == {"policy": "group", "exact_sets": 2, "exact_tracks": 4, "conflicting_sets": 2,
                                     "near_pairs": 0, "groups": 2, "dropped": 0}
    assert (tmp_path / "raw" / "folder" / "tracks.csv").is_file()


def test_interrupted_fetch_keeps_previous_dataset_and_leaves_no_temp(tmp_path, monkeypatch):
    src = _music(tmp_path)
    p = params_from_dict({"data": {"source": "folder", "path": str(src), "workers": 1}})
    root = tmp_path / "raw"
    fetch(p, root, progress=False)
    before = (root / "folder" / "tracks.csv").read_bytes()
    write_tone(src / "blues" / "blues.00005.wav")  # a change the next fetch would pick up

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(probe_mod, "probe_files", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch(p, root, progress=False)
    assert (root / "folder" / "tracks.csv").read_bytes() == before  # old complete dataset untouched
    assert sorted(x.name for x in root.iterdir()) == ["folder"]


def test_killed_fetch_leaves_no_complete_looking_dataset(tmp_path):
    src = _music(tmp_path)
    root = tmp_path / "raw"
    marker = tmp_path / "probing"
    script = textwrap.dedent(f"""
        import time, pathlib
        import mgr.data.probe as probe
        from mgr.data.fetch import fetch
        from mgr.params import params_from_dict

        def slow(*a, **k):
            pathlib.Path({str(marker)!r}).write_text("x")
            time.sleep(60)

        probe.probe_files = slow
        p = params_from_dict({{"data": {{"source": "folder", "path": {str(src)!r}, "copy": True, "workers": 1}}}})
        fetch(p, {str(root)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert proc.poll() is None, "the fetch subprocess died early"
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert not (root / "folder").exists()
    leftovers = list(root.glob(".folder.tmp-*"))
    assert leftovers and (leftovers[0] / "audio").is_dir()  # copied audio lives only under the temp name
    assert not (leftovers[0] / "tracks.csv").exists()
    # the next fetch cleans up and completes
    p = params_from_dict({"data": {"source": "folder", "path": str(src), "workers": 1}})
    res = fetch(p, root, progress=False)
    assert res.n_tracks == 4 and len(load_tracks(res.dataset_dir)) == 4
    assert sorted(x.name for x in root.iterdir()) == ["folder"]


@pytest.mark.slow
def test_synthetic_source_probes_and_rejects_injected_corrupt_files(tmp_path):
    p = params_from_dict({"data": {"source": "synthetic", "workers": 2, "inject_corrupt": 4,
                                   "synthetic": {"clips_per_genre": 1, "duration_s": 2.0, "sample_rate": 8000}}})
    res = fetch(p, tmp_path / "raw", progress=False)
    assert res.n_tracks == 10 and res.n_rejected == 4
    assert res.genres is not None and len(res.genres) == 10
    tr = load_tracks(res.dataset_dir)
    assert (tr.duration_s == 2.0).all() and (tr.sample_rate == 8000).all()
    assert {"tempo_bpm", "tags", "meter", "key"} <= set(tr.columns)
    assert all(Path(x).is_file() for x in tr.path)
    rej = (res.dataset_dir / "rejected.csv").read_text().splitlines()
    assert len(rej) == 5 and all("corrupt" in line for line in rej[1:])
