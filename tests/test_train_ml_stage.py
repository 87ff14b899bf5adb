"""stages/train_ml.py: one model per call, artifacts + metrics, one-line user errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mgr.errors import DataError
from mgr.models import classical as C
from mgr.models import classical_artifact

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_classical import make_table  # noqa: E402

PARAMS = {
    "ml": {
        "models": ["logreg", "xgboost"],
        "workers": 1,
        "xgboost": {"n_estimators": 10, "max_depth": 2},
        "random_forest": {"n_estimators": 10},
    }
}


def _stage():
    spec = importlib.util.spec_from_file_location("train_ml_stage", ROOT / "stages" / "train_ml.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    make_table(n_per_class=30).to_parquet(tmp_path / "features.parquet", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return tmp_path


def _args(w: Path, name: str) -> list[str]:
    return [name, "--params", str(w / "params.yaml"), "--features", str(w / "features.parquet"),
            "--models-dir", str(w / "models"), "--metrics-dir", str(w / "metrics" / "train-ml")]


@pytest.mark.parametrize("name", ["logreg", "xgboost"])
def test_stage_writes_artifact_and_metrics(workdir, name, capsys):
    _stage().main(_args(workdir, name))
    metrics = json.loads((workdir / "metrics" / "train-ml" / f"{name}.json").read_text())
    assert metrics["folds"] == 1
    # inner_cv (default): the 96 non-test tracks train the model and are validated out of fold
    assert set(metrics["val"]) == set(C.HEADLINE) and metrics["val"]["n"] == 96 == metrics["n_train"]
    assert metrics["per_fold"]["holdout"] == {"n_train": 96, "n_test": 24, "feature_set": "gtzan57",
                                              "val": metrics["val"], "test": None}
    assert metrics["val"]["accuracy"] > 0.5
    art = classical_artifact.load(workdir / "models" / name)
    assert art.card["feature_set"] == "gtzan57" and art.card["params"]["seed"] == 42
    assert art.card["val_metrics"]["accuracy"] == metrics["val"]["accuracy"]
    # nothing half-written is left next to the outputs
    assert [p.name for p in (workdir / "models").iterdir()] == [name]
    assert f"{name}: wrote" in capsys.readouterr().out


def test_stage_kfold_metrics(workdir):
    make_table(n_per_class=20, folds=4).to_parquet(workdir / "features.parquet", index=False)
    _stage().main(_args(workdir, "logreg"))
    m = json.loads((workdir / "metrics" / "train-ml" / "logreg.json").read_text())
    assert m["folds"] == 4 and set(m["per_fold"]) == {"0", "1", "2", "3"}
    assert {"val", "val_std", "test", "test_std"} <= set(m)
    # train size per fold: every track outside the test fold (60 of 80, not 40)
    assert [m["per_fold"][str(f)]["n_train"] for f in range(4)] == [60] * 4
    assert [m["per_fold"][str(f)]["n_test"] for f in range(4)] == [20] * 4


@pytest.mark.parametrize(
    "name,setup,code,message",
    [
        ("knn", None, 2, "error: params: 'knn' is neither in ml.models nor an ml.embedding_models entry"),
        ("svm", None, 2, "error: params: 'svm' is neither in ml.models nor an ml.embedding_models entry"),
        ("svm-musicnn_mtt", None, 2, "(logreg, xgboost, svm-musicnn_msd, logreg-musicnn_msd, fusion)"),
        ("logreg", "nofeatures", 1, "features.parquet not found (run the features stage first"),
        ("logreg", "garbage", 1, "is not a readable parquet file"),
    ],
)
def test_stage_user_errors_are_one_line(workdir, name, setup, code, message):
    if setup == "nofeatures":
        (workdir / "features.parquet").unlink()
    elif setup == "garbage":
        (workdir / "features.parquet").write_bytes(b"not parquet")
    r = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "train_ml.py"), *_args(workdir, name)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message in lines[0]
    assert not (workdir / "models").exists()


def test_dvc_stage_fans_out_over_ml_models():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    st = dvc["stages"]["train-ml"]
    assert st["foreach"] == "${ml.models}"
    do = st["do"]
    # every path the stage reads or writes is named in the cmd, and is a dep / out
    assert do["cmd"] == ("python stages/train_ml.py ${item} --features data/features.parquet --models-dir models "
                         "--metrics-dir metrics/train-ml")
    deps = set(do["deps"])
    assert {"stages/train_ml.py", "data/features.parquet"} <= deps
    assert "src/mgr/models/classical.py" in deps or "src/mgr/models" in deps
    assert "ml.${item}" in do["params"] and "ml.seed" in do["params"]
    assert do["outs"] == ["models/${item}"]
    assert list(do["metrics"][0]) == ["metrics/train-ml/${item}.json"]
    # the same models on the pretrained embedding: params by key; both stages read features.set
    # (handcrafted candidates / fusion bases) and features.embedding (the fusion's embedding bases)
    emb = dvc["stages"]["train-ml-embedding"]
    assert emb["foreach"] == "${ml.embedding_models}"
    assert emb["do"]["cmd"].startswith("python stages/train_ml.py ${item}-${features.embedding} --features ")
    for key in ("features.embedding", "features.set", "ml.embedding_candidates", "ml.validation", "ml.inner_cv"):
        assert key in emb["do"]["params"], key
    assert {"features.set", "ml.validation", "ml.inner_cv"} <= set(do["params"])
    assert not {"features.embedding", "ml.svm", "ml.logreg"} & set(do["params"])  # ml.svm reruns svm, not xgboost
    # the stacked model: its own stage, with the blocks of its base models
    st = dvc["stages"]["train-ml-stacked"]
    assert st["foreach"] == "${ml.stacked_models}" and st["do"]["outs"] == ["models/${item}"]
    assert "src/mgr/models/stacking.py" in st["do"]["deps"]
    for key in ("ml.${item}", "ml.svm", "ml.logreg", "ml.random_forest", "features.set", "features.embedding"):
        assert key in st["do"]["params"], key
    assert emb["do"]["outs"] == ["models/${item}-${features.embedding}"]


def test_stage_trains_a_model_on_the_embedding_columns_only(workdir):
    """`<model>-<embedding>` trains on that set's columns of a table holding several sets."""
    from mgr.features.tables import feature_names

    df = make_table(n_per_class=30)
    rng = np.random.default_rng(0)
    names = feature_names("musicnn_msd")
    emb = pd.DataFrame(rng.standard_normal((len(df), len(names))), columns=names)
    pd.concat([df, emb], axis=1).to_parquet(workdir / "features.parquet", index=False)
    # the default candidates need the taggram too: a table without it is a one-line error
    with pytest.raises(DataError, match="lacks 50 musicnn_msd_tags column"):
        _stage().main(_args(workdir, "logreg-musicnn_msd"))
    (workdir / "params.yaml").write_text(yaml.safe_dump({"ml": {**PARAMS["ml"], "embedding_candidates": ["embedding"]}}))
    _stage().main(_args(workdir, "logreg-musicnn_msd"))
    card = json.loads((workdir / "models" / "logreg-musicnn_msd" / "model.json").read_text())
    assert card["feature_set"] == "musicnn_msd" and card["feature_columns"] == names
    assert card["name"] == "logreg-musicnn_msd" and card["onnx_sha256"]
