"""params.yaml is read only through mgr.params; bad values are one clear line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mgr.errors import ParamsError
from mgr.params import (
    DATA_SOURCES,
    SPLIT_STRATEGIES,
    Params,
    load_params,
    params_from_dict,
)


def test_repo_params_file_is_valid_and_matches_defaults(project_root: Path) -> None:
    p = load_params(project_root / "params.yaml")
    assert p.data.source == "synthetic"
    # every key in the committed file is known (load would fail otherwise), and the committed
    # values equal the dataclass defaults, so `mgr params` and the file tell the same story
    assert p == Params()


def test_public_contract_keys() -> None:
    p = params_from_dict({})
    assert set(DATA_SOURCES) == {"synthetic", "folder", "gtzan", "fma"}
    assert set(SPLIT_STRATEGIES) == {"stratified", "kfold", "group", "predefined"}
    for key in ("source", "path", "seed"):
        assert hasattr(p.data, key)
    for key in ("strategy", "k", "seed", "test_size", "val_size"):
        assert hasattr(p.split, key)


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        ({"data": {"source": "spotify"}}, ["data.source", "synthetic, folder, gtzan, fma"]),
        ({"split": {"strategy": "random"}}, ["split.strategy", "stratified, kfold, group, predefined"]),
        ({"data": {"sauce": "gtzan"}}, ["data.sauce", "unknown key", "source"]),
        ({"bogus": {}}, ["'bogus'", "unknown key"]),
        ({"split": {"k": 1}}, ["split.k", "out of range", "[2, 100]"]),
        ({"split": {"k": "five"}}, ["split.k", "integer"]),
        ({"split": {"k": True}}, ["split.k", "integer"]),
        ({"split": {"test_size": 1.0}}, ["split.test_size", "out of range"]),
        ({"split": {"test_size": 0.6, "val_size": 0.5}}, ["split.test_size + split.val_size"]),
        ({"ml": {"models": ["svm", "deepforest"]}}, ["ml.models[1]", "svm, xgboost, logreg, random_forest"]),
        ({"dl": {"models": ["resnet"]}}, ["dl.models[0]", "cnn2d"]),
        ({"ml": {"svm": {"gamma": "huge"}}}, ["ml.svm.gamma", "scale, auto"]),
        ({"data": {"source": "folder"}}, ["data.path", "required"]),
        ({"data": "synthetic"}, ["data", "mapping"]),
        ({"spectrogram": {"compression": "zstd"}}, ["spectrogram.compression", "none, gzip, lzf"]),
    ],
)
def test_bad_values_name_the_key_and_allowed_values(doc: dict, needles: list[str]) -> None:
    with pytest.raises(ParamsError) as ei:
        params_from_dict(doc)
    msg = str(ei.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_defaults_fill_missing_keys_and_ints_become_floats() -> None:
    p = params_from_dict({"split": {"test_size": 0.25}, "audio": {"duration_s": 30}})
    assert p.split.test_size == 0.25 and p.split.k == 5
    assert isinstance(p.audio.duration_s, float) and p.audio.duration_s == 30.0


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(f)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_cli_reports_bad_params_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({"split": {"strategy": "random"}}))
    mgr = Path(sys.executable).parent / "mgr"
    r = subprocess.run([str(mgr), "params", "--file", str(f)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: params: split.strategy")


def test_stage_reports_bad_params_without_traceback(tmp_path: Path, project_root: Path) -> None:
    # stages run from the project root; run split against a broken params file in a copy
    import shutil

    work = tmp_path / "proj"
    shutil.copytree(project_root / "stages", work / "stages")
    (work / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "napster"}}))
    r = subprocess.run([sys.executable, str(work / "stages" / "split.py")], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "data.source" in r.stderr
