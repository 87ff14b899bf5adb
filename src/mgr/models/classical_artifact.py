"""The classical artifact (``models/<name>/``): writing it, reading it safely, and the
:class:`ClassicalArtifact` evaluate and ``mgr predict`` both score through.

Files: ``model.json`` (the card), ``model.onnx`` (skl2onnx / onnxmltools via
:func:`mgr.models.export.export_sklearn`: float32 input ``input``, output ``probabilities``) and
the native model, ``model.skops`` (scikit-learn, via :mod:`skops.io`) or ``model.ubj`` (XGBoost's
own UBJSON), kept for inspection and retraining. :func:`load` opens the ONNX file (sha256 checked
against the card's ``onnx_sha256``) on onnxruntime, without importing scikit-learn or XGBoost.
:func:`load_native` reads the native file; nothing is ever unpickled: it refuses a plain pickle,
a foreign file, or a skops file holding any type outside :data:`TRUSTED_TYPES` (skops' own safe
defaults plus the few scikit-learn internals our models need) before anything in it is built.
:meth:`ClassicalArtifact.predict_proba` applies the card's temperature (``calibrated=False``:
the raw probabilities; :meth:`ClassicalArtifact.calibrate` maps raw to calibrated).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mgr.cards import read_card as read_any_card
from mgr.errors import ArtifactError, DataError
from mgr.evaluation.calibration import apply_temperature
from mgr.features.tables import feature_set_of
from mgr.inference.runtime import OnnxModel
from mgr.io import atomic_path, file_hash, library_versions, rezip, write_json
from mgr.models.export import export_sklearn

META_COLUMNS = ("track_id", "split", "genre", "fold")


def feature_columns(df: Any) -> list[str]:
    """The feature columns of a features table, in order (everything but the meta columns)."""
    cols = [str(c) for c in df.columns if c not in META_COLUMNS]
    if not cols:
        raise DataError("the features table has no feature columns")
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    bad = [c for c in cols if not is_numeric_dtype(df[c]) or is_bool_dtype(df[c])]
    if bad:
        raise DataError(f"feature columns must be numeric; not numeric: {bad[:5]}")
    return cols


def feature_matrix(df: Any, cols: Sequence[str]) -> np.ndarray:
    """``df[cols]`` as a float64 array; non-finite values are a DataError naming the columns."""
    X = df.loc[:, list(cols)].to_numpy(dtype=np.float64)
    finite = np.isfinite(X)
    if not finite.all():
        where = [cols[j] for j in np.nonzero(~finite.all(axis=0))[0]]
        raise DataError(
            f"{int((~finite).sum())} non-finite feature values (NaN/inf) in columns {where[:5]}"
            + (f" (+{len(where) - 5} more)" if len(where) > 5 else "")
        )
    return X


CARD_FILE = "model.json"


ONNX_FILE = "model.onnx"


SKOPS_FILE = "model.skops"


XGB_FILE = "model.ubj"


MODEL_FILES = (SKOPS_FILE, XGB_FILE)


CARD_KEYS = ("name", "kind", "labels", "feature_set", "feature_columns", "model_file")


# Types outside skops' built-in safe set that our estimators contain. This list lives in the
# code, never in the artifact: a file that needs anything else is refused, whatever it claims.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",  # a dict subclass: StackingClassifier.named_estimators_ (the fusion model)
)


_PICKLE_MAGIC = (b"\x80",)  # protocol 2+ pickles (and joblib dumps) start with PROTO


def _versions() -> dict[str, str]:
    return library_versions("mgr", "scikit-learn", "xgboost", "skops", "numpy", "pandas")


def _is_xgboost(model: Any) -> bool:
    return type(model).__module__.startswith("xgboost")


def _synthetic_sample(model: Any, n_features: int, n: int = 16) -> np.ndarray:
    """Rows for the export parity check when no training rows are given: standard normal in
    the space of the pipeline's scaler when there is one (its public ``mean_``/``scale_``)."""
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((n, n_features))
    for est in [model, *[s[1] for s in getattr(model, "steps", [])],
                *[getattr(getattr(model, "estimator", None), "steps", [(None, None)])[0][1]]]:
        mean, scale = getattr(est, "mean_", None), getattr(est, "scale_", None)
        if mean is not None and scale is not None and np.shape(mean) == (n_features,):
            return Z * np.asarray(scale, np.float64) + np.asarray(mean, np.float64)
    return Z


def settle(model: Any) -> Any:
    """Round fitted linear coefficients (``coef_``, ``intercept_``, float64) to float32 precision,
    in place, in ``model`` and the estimators inside it (pipeline steps, calibrated members).

    scikit-learn's lbfgs evaluates NumPy's ``exp``/``log``, which dispatch by CPU, so a logistic
    regression's coefficients came out ~1e-15 apart on two machines: the saved file (and its hash
    in the card and ``dvc.lock``) differed though every decision was the same. The ONNX model that
    evaluate and predict run holds float32 weights anyway; rounding the native ones to the same
    precision changes no prediction (parity is checked at export) and makes them the same bits.
    Returns ``model``."""
    seen: set[int] = set()

    def visit(o: Any) -> None:
        if o is None or id(o) in seen or not hasattr(o, "__dict__"):
            return
        seen.add(id(o))
        for attr in ("coef_", "intercept_"):
            v = getattr(o, attr, None)
            if isinstance(v, np.ndarray) and v.dtype == np.float64 and attr in vars(o):
                setattr(o, attr, v.astype(np.float32).astype(np.float64))
        for _, step in getattr(o, "steps", None) or []:
            visit(step)
        for member in getattr(o, "calibrated_classifiers_", None) or []:
            visit(member)
        for attr in ("estimator", "base_estimator", "final_estimator_"):
            visit(vars(o).get(attr))
        for e in vars(o).get("estimators_", None) or []:
            visit(e)

    visit(model)
    return model


def save(model: Any, model_dir: str | Path, card: dict[str, Any], *, sample: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``model_dir`` atomically: the native model (``model.skops`` or ``model.ubj``), its
    ONNX export ``model.onnx`` (checked against ``model.predict_proba`` on ``sample`` rows, or on
    synthetic rows, within 1e-4) and ``model.json``. Returns the card as written (``model_file``,
    ``model_sha256``, ``onnx_file``, ``onnx_sha256``, ``versions`` filled in)."""
    import skops.io as sio

    missing = [k for k in ("name", "labels", "feature_columns") if k not in card]
    if missing:
        raise ValueError(f"card lacks {missing}")  # programming error
    card = {"kind": "classical", **card}
    card.setdefault("versions", _versions())
    card.setdefault("feature_set", None)
    n_features = len(card["feature_columns"])
    settle(model)
    if sample is None:
        sample = _synthetic_sample(model, n_features)
    with atomic_path(model_dir, is_dir=True) as tmp:
        if _is_xgboost(model):
            card["model_file"] = XGB_FILE
            model.save_model(str(tmp / XGB_FILE))
        else:
            card["model_file"] = SKOPS_FILE
            sio.dump(model, tmp / SKOPS_FILE)
            rezip(tmp / SKOPS_FILE, _SkopsIds())  # the same model, the same bytes
            extra = sorted(set(sio.get_untrusted_types(file=tmp / SKOPS_FILE)) - set(TRUSTED_TYPES))
            if extra:  # never write an artifact that load_native() would refuse
                raise ArtifactError(f"model {card['name']!r} holds types not in TRUSTED_TYPES: {extra}")
        export_sklearn(model, n_features, tmp / ONNX_FILE, sample=sample)
        card["model_sha256"] = file_hash(tmp / card["model_file"])
        card["onnx_file"] = ONNX_FILE
        card["onnx_sha256"] = file_hash(tmp / ONNX_FILE)
        write_json(tmp / CARD_FILE, card)
    return card


class _SkopsIds:
    """A skops archive's entries with object ids renumbered in order of first appearance.

    skops names objects by ``id()`` (memory addresses: ``"__id__": 139872487674896`` in
    ``schema.json``, ``139872487674896.npy`` for arrays), so the same model got new bytes on every
    run. Ids only tie references together, so sequential numbers (one mapping for the schema and
    the file names) load to the same objects. Used as :func:`mgr.io.rezip`'s ``edit``; the
    schema comes last in the archive, after the arrays it names, so file names are mapped first."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}

    def _map(self, i: int) -> int:
        return self.ids.setdefault(int(i), len(self.ids) + 1)

    def _walk(self, o: Any) -> Any:
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                if k == "__id__" and isinstance(v, int):
                    out[k] = self._map(v)
                elif k == "file" and isinstance(v, str) and v.endswith(".npy") and v[:-4].isdigit():
                    out[k] = f"{self._map(int(v[:-4]))}.npy"
                else:
                    out[k] = self._walk(v)
            return out
        if isinstance(o, list):
            return [self._walk(v) for v in o]
        return o

    def __call__(self, name: str, data: bytes) -> tuple[str, bytes]:
        if name == "schema.json":
            return name, json.dumps(self._walk(json.loads(data)), indent=2).encode()
        if name.endswith(".npy") and name[:-4].isdigit():
            return f"{self._map(int(name[:-4]))}.npy", data
        return name, data


def _check_hash(path: Path, expected: str | None) -> None:
    """The card's ``model_sha256`` (when present) must match the model file."""
    if expected is not None and file_hash(path) != expected:
        raise ArtifactError(f"{path} does not match the sha256 in its model card (modified or corrupt); refusing to load it")


def _load_skops(path: Path, sha256: str | None = None) -> Any:
    import skops.io as sio

    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise ArtifactError(f"{path} is a plain pickle, not a skops file; refusing to load it (a pickle can run code)")
    if not zipfile.is_zipfile(path):
        raise ArtifactError(f"{path} is not a skops file (not a zip archive); refusing to load it")
    try:
        found = sio.get_untrusted_types(file=path)
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable skops file ({type(e).__name__}: {e})") from None
    bad = sorted(set(found) - set(TRUSTED_TYPES))
    if bad:
        raise ArtifactError(
            f"{path} contains types that are not trusted: {', '.join(bad)}; refusing to load it "
            "(tampered or foreign artifact)"
        )
    _check_hash(path, sha256)
    try:
        return sio.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as e:
        raise ArtifactError(f"{path} could not be loaded safely ({type(e).__name__}: {e})") from None


def _load_xgboost(path: Path, sha256: str | None = None) -> Any:
    from xgboost import XGBClassifier

    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise ArtifactError(f"{path} is a plain pickle, not an XGBoost model; refusing to load it (a pickle can run code)")
    if not head.startswith(b"{"):  # UBJSON and JSON models both open an object
        raise ArtifactError(f"{path} is not an XGBoost UBJSON/JSON model; refusing to load it")
    _check_hash(path, sha256)
    model = XGBClassifier()
    try:
        model.load_model(str(path))
    except Exception as e:
        raise ArtifactError(f"{path} is not a valid XGBoost model ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return model


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The validated ``model.json`` of a classical artifact."""
    card = read_any_card(model_dir, kind="classical")
    path = Path(model_dir) / CARD_FILE
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ArtifactError(f"{path} lacks {missing}")
    for key in ("labels", "feature_columns"):
        v = card[key]
        if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
            raise ArtifactError(f"{path}: {key} must be a non-empty list of strings")
    if card["model_file"] not in MODEL_FILES:
        raise ArtifactError(f"{path}: model_file must be one of {MODEL_FILES}, got {card['model_file']!r}")
    return card


def _known_feature_column(column: str) -> bool:
    try:
        feature_set_of(column)
        return True
    except DataError:
        return False


@dataclass
class ClassicalArtifact:
    """A classical model's card plus its ONNX session (:class:`mgr.inference.runtime.OnnxModel`):
    what evaluate scores and ``mgr predict`` runs. No scikit-learn/XGBoost import."""

    model_dir: Path
    card: dict[str, Any]
    model: Any  # mgr.inference.runtime.OnnxModel

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.card["feature_columns"])

    @property
    def feature_set(self) -> str | None:
        return self.card.get("feature_set")

    def matrix(self, X: Any) -> np.ndarray:
        """The model's input matrix from a DataFrame (columns checked against the card, reordered
        to the card's order; meta columns ignored) or an array (width checked)."""
        cols = self.feature_columns
        if hasattr(X, "columns"):
            have = [str(c) for c in X.columns if c not in META_COLUMNS]
            missing = [c for c in cols if c not in set(have)]
            # columns of other known feature sets are fine: one table holds every set the models use
            extra = [c for c in have if c not in set(cols) and not _known_feature_column(c)]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing {missing[:5]}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
                if extra:
                    parts.append(f"unexpected {extra[:5]}" + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""))
                raise ArtifactError(
                    f"feature columns do not match model {self.name!r} (trained on feature set "
                    f"{self.feature_set!r}, {len(cols)} columns): {'; '.join(parts)}"
                )
            return feature_matrix(X, cols)
        A = np.asarray(X, dtype=np.float64)
        if A.ndim == 1:
            A = A[None, :]
        if A.ndim != 2 or A.shape[1] != len(cols):
            raise ArtifactError(
                f"model {self.name!r} expects {len(cols)} feature columns "
                f"(feature set {self.feature_set!r}), got an array of shape {A.shape}"
            )
        if not np.isfinite(A).all():
            raise DataError(f"{int((~np.isfinite(A)).sum())} non-finite feature values (NaN/inf)")
        return A

    @property
    def temperature(self) -> float:
        """The card's ``calibration.temperature`` (fitted at train time), 1.0 when it has none."""
        return float((self.card.get("calibration") or {}).get("temperature", 1.0))

    def predict_proba(self, X: Any, calibrated: bool = True) -> np.ndarray:
        """``(n, n_classes)`` class probabilities (float64) from the ONNX model, tempered by the
        card's temperature (``calibrated=False``: the model's raw probabilities); columns follow
        :attr:`labels`. Non-finite outputs raise :class:`mgr.inference.runtime.InferenceError`."""
        A = self.matrix(X)
        if len(A) == 0:
            return np.zeros((0, len(self.labels)))
        out = np.asarray(self.model.run(A.astype(np.float32), ["probabilities"])["probabilities"], dtype=np.float64)
        return self.calibrate(out) if calibrated else out

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """Raw probabilities (``predict_proba(calibrated=False)``) -> the calibrated ones (float64)."""
        t = self.temperature
        return apply_temperature(probs, t) if t != 1.0 else np.asarray(probs, dtype=np.float64)

    def predict(self, X: Any) -> list[str]:
        """The most probable genre per row."""
        labels = self.labels
        return [labels[i] for i in self.predict_proba(X).argmax(axis=1)]


def load(model_dir: str | Path, *, threads: int | None = None) -> ClassicalArtifact:
    """Open ``models/<name>/`` for inference: the card, then ``model.onnx`` (sha256 checked
    against the card's ``onnx_sha256`` before onnxruntime reads it; the native model file's
    sha256 too, when present, so a tampered artifact is refused as a whole). Input width and
    class count are checked against the card. Imports neither scikit-learn nor XGBoost."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    if not card.get("onnx_file") or not card.get("onnx_sha256"):
        raise ArtifactError(f"{model_dir}: the card names no ONNX model (onnx_file/onnx_sha256); retrain the model")
    if card["onnx_file"] != ONNX_FILE:
        raise ArtifactError(f"{model_dir / CARD_FILE}: onnx_file must be {ONNX_FILE!r}, got {card['onnx_file']!r}")
    native = model_dir / card["model_file"]
    if native.is_file():
        _check_hash(native, card.get("model_sha256"))
    model = OnnxModel(model_dir / ONNX_FILE, sha256=card["onnx_sha256"], threads=threads)
    path = model.path
    if "probabilities" not in model.output_names:
        raise ArtifactError(f"{path}: no 'probabilities' output (has {model.output_names})")
    n_in, n_cols = model.input_shape[-1], len(card["feature_columns"])
    if len(model.input_shape) != 2 or n_in != n_cols:
        raise ArtifactError(f"{path}: the model takes {n_in} features but the card lists {n_cols}")
    n_out, n = model.output_shape("probabilities")[-1], len(card["labels"])
    if n_out is not None and n_out != n:
        raise ArtifactError(f"{path}: the model has {n_out} classes but the card lists {n} labels")
    return ClassicalArtifact(model_dir, card, model)


def load_native(model_dir: str | Path) -> Any:
    """The fitted scikit-learn / XGBoost estimator of ``models/<name>/`` (for inspection or
    retraining; evaluate and predict use :func:`load`). Safe: no pickle; skops with
    :data:`TRUSTED_TYPES` only; the file's sha256 must match the card's ``model_sha256``."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    path = model_dir / card["model_file"]
    if not path.exists():
        raise ArtifactError(f"{path} not found (the card names it as the model file)")
    sha = card.get("model_sha256")
    model = _load_xgboost(path, sha) if card["model_file"] == XGB_FILE else _load_skops(path, sha)
    n = len(card["labels"])
    if _is_xgboost(model):
        got = int(getattr(model, "n_classes_", 0) or 0)
    else:
        if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
            raise ArtifactError(f"{path} does not hold a fitted classifier")
        classes = np.asarray(model.classes_)
        got = len(classes) if np.array_equal(classes, np.arange(len(classes))) else -1
    if got != n:
        raise ArtifactError(f"{path}: the model has {got} classes but the card lists {n} labels")
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and int(n_in) != len(card["feature_columns"]):
        raise ArtifactError(
            f"{path}: the model takes {int(n_in)} features but the card lists {len(card['feature_columns'])}"
        )
    return model
