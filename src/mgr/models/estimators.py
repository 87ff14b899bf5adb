"""The classical estimators: the registry (name -> how to build it from ``ml.<name>``) and the
hyper-parameter search through scikit-learn's searchers (see :mod:`mgr.models.classical` for the
protocol). scikit-learn and XGBoost are imported inside the functions.

Registry (:data:`REGISTRY`, name -> :class:`ModelSpec`):

``svm``
    ``CalibratedClassifierCV(Pipeline[StandardScaler -> SVC(kernel="rbf", C, gamma)],
    method="temperature", cv=calibration_cv, ensemble=False)``: **one** SVC fitted on all
    training rows; probabilities ``softmax(beta * decision_function)`` with the single
    temperature parameter fitted on ``calibration_cv``-fold out-of-fold decision values. The
    scaling is monotone, so the predicted genre is the plain SVC's decision. (The former
    ``method="sigmoid"`` ensemble averaged ``calibration_cv`` SVCs each fitted on a fraction of
    the rows, and per-class sigmoids re-rank classes: both cost accuracy on small training sets;
    ``SVC(probability=True)`` is deprecated in scikit-learn 1.9.)
``xgboost``
    ``xgboost.XGBClassifier`` (``tree_method="hist"``) on label-encoded genres.
``logreg``
    ``Pipeline[StandardScaler -> LogisticRegression(C, max_iter)]``.
``random_forest``
    ``RandomForestClassifier(n_estimators, max_depth, min_samples_leaf)``.

Feature blocks (:func:`block_layout`): a feature set joined from several (``gtzan57+musicnn_msd_tags``)
is standardised **per block**: each column to zero mean and unit variance, then each block scaled by
``sqrt(D / (B * d_b))`` (``D`` columns in ``B`` blocks, ``d_b`` in block ``b``), so that every block
holds the same share ``D / B`` of the total variance and a 400-column embedding does not drown a
50-column taggram in the SVM's RBF distance or the logistic regression's L2 penalty; the total
variance stays ``D``, so ``gamma="scale"`` and ``C`` keep their meaning. It is one
``ColumnTransformer`` (a ``StandardScaler`` per block, ``transformer_weights``) in place of the
``StandardScaler``; a single block keeps the plain ``StandardScaler``. Trees (random forest,
XGBoost) are scale-invariant and get no scaling. When the layout covers only some of the columns
(the base models of :mod:`mgr.models.stacking`) the same step also selects the model's own
columns of the wider table.

Search (``ml.search``: ``grid`` or ``random`` over ``ml.<name>.grid``): ``ParameterGrid`` /
``ParameterSampler`` candidates scored by ``GridSearchCV`` with stratified ``ml.search_cv``-fold
cross-validation on the train rows only, balanced accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgr.errors import DataError, ParamsError
from mgr.params import MlParams, params_from_dict


def proba(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X), dtype=np.float64)


Layout = list[tuple[str, list[int]]]


def block_layout(columns: list[str] | None) -> Layout | None:
    """``[(feature set, column indices)]`` of ``columns`` grouped by feature set
    (:func:`mgr.features.tables.feature_set_of`), in order of first appearance; ``None`` when a
    column belongs to no known set (a user's own table: one block)."""
    if not columns:
        return None
    from mgr.features.tables import feature_set_of

    groups: dict[str, list[int]] = {}
    try:
        for i, c in enumerate(columns):
            groups.setdefault(feature_set_of(c), []).append(i)
    except DataError:
        return None
    return list(groups.items())


def block_weights(layout: Layout) -> dict[str, float]:
    """``sqrt(D / (B * d_b))`` per block (module docstring): equal variance shares, total ``D``."""
    D, B = sum(len(ix) for _, ix in layout), len(layout)
    return {name: float(np.sqrt(D / (B * len(ix)))) for name, ix in layout}


def _front(layout: Layout | None, n_features: int | None, scale: bool) -> Any:
    """The first step of a model: ``StandardScaler`` (one block, all columns), a per-block
    ``ColumnTransformer`` (several blocks, or a subset of the columns), or ``None`` (a tree on all
    columns)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    covers_all = layout is None or (n_features is not None
                                    and sorted(i for _, ix in layout for i in ix) == list(range(n_features)))
    if layout is None or (len(layout) == 1 and covers_all):
        return StandardScaler() if scale else None
    if not scale:
        return None if covers_all else ColumnTransformer(
            [("cols", "passthrough", [i for _, ix in layout for i in ix])], remainder="drop")
    return ColumnTransformer([(name, StandardScaler(), list(ix)) for name, ix in layout], remainder="drop",
                             transformer_weights=block_weights(layout) if len(layout) > 1 else None)


def _build_svm(p: Any, seed: int, n_jobs: int, front: Any) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    svc = SVC(kernel="rbf", C=p.C, gamma=p.gamma, random_state=seed)
    pipe = Pipeline([("scale", front), ("svc", svc)])
    # ensemble=False: one SVC fitted on all rows; temperature scaling (one parameter, fitted on
    # out-of-fold decision values) is monotone, so the argmax is the SVC's own decision
    return CalibratedClassifierCV(pipe, method="temperature", cv=p.calibration_cv, ensemble=False)


def _build_xgboost(p: Any, seed: int, n_jobs: int, front: Any) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=p.n_estimators,
        max_depth=p.max_depth,
        learning_rate=p.learning_rate,
        subsample=p.subsample,
        colsample_bytree=p.colsample_bytree,
        tree_method="hist",
        random_state=seed,
        n_jobs=n_jobs,
    )


def _build_logreg(p: Any, seed: int, n_jobs: int, front: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    clf = LogisticRegression(C=p.C, max_iter=p.max_iter, random_state=seed)
    return Pipeline([("scale", front), ("logreg", clf)])


def _build_random_forest(p: Any, seed: int, n_jobs: int, front: Any) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    rf = RandomForestClassifier(
        n_estimators=p.n_estimators,
        max_depth=p.max_depth,
        min_samples_leaf=p.min_samples_leaf,
        random_state=seed,
        n_jobs=n_jobs,
    )
    return rf if front is None else Pipeline([("cols", front), ("random_forest", rf)])


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: ``build(params_block, seed, n_jobs, front)`` -> an unfitted estimator
    (``front``: the first step, see :func:`_front`)."""

    name: str
    build: Callable[[Any, int, int, Any], Any]
    fmt: str  # "skops" | "xgboost"
    description: str
    scaled: bool = True  # takes a standardising front step (False: trees)


REGISTRY: dict[str, ModelSpec] = {
    "svm": ModelSpec("svm", _build_svm, "skops", "StandardScaler + SVC(rbf) fitted on all rows, temperature-scaled on out-of-fold decisions"),
    "xgboost": ModelSpec("xgboost", _build_xgboost, "xgboost", "XGBClassifier (hist) on label-encoded genres", False),
    "logreg": ModelSpec("logreg", _build_logreg, "skops", "StandardScaler + LogisticRegression"),
    "random_forest": ModelSpec("random_forest", _build_random_forest, "skops", "RandomForestClassifier", False),
}


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise ParamsError(f"unknown classical model {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def block_params(block: Any) -> dict[str, Any]:
    """A params block as a plain mapping without its search ``grid``."""
    return {k: v for k, v in dataclasses.asdict(block).items() if k != "grid"}


def build(name: str, ml: MlParams, *, n_jobs: int = 1, block: Any | None = None, layout: Layout | None = None,
          n_features: int | None = None) -> Any:
    """An unfitted estimator for ``name`` configured by ``ml.<name>`` (or ``block``), on columns
    grouped as ``layout`` (:func:`block_layout`; ``None``: one block) of ``n_features`` columns."""
    spec = get_spec(name)
    if spec.name == "xgboost" and layout is not None and n_features is not None and \
            sorted(i for _, ix in layout for i in ix) != list(range(n_features)):
        raise ParamsError("xgboost cannot train on a subset of the table's columns (its artifact is a bare booster)")
    front = _front(layout, n_features, spec.scaled)
    return spec.build(block if block is not None else getattr(ml, name), ml.seed, n_jobs, front)


def _block_with(name: str, block: Any, overrides: dict[str, Any]) -> Any:
    """``block`` with ``overrides`` applied, validated exactly like params.yaml values."""
    values = {**dataclasses.asdict(block), **overrides}
    return getattr(params_from_dict({"ml": {name: values}}).ml, name)


def validate_grid(name: str, ml: MlParams) -> dict[str, list]:
    """Check ``ml.<name>.grid``: known keys, non-empty lists, every value valid for its key."""
    block = getattr(ml, name)
    allowed = [f.name for f in dataclasses.fields(block) if f.name != "grid"]
    grid = block.grid or {}
    for key, values in grid.items():
        if key not in allowed:
            raise ParamsError(f"params: ml.{name}.grid: unknown key {key!r} (allowed: {', '.join(allowed)})")
        if not isinstance(values, list) or not values:
            raise ParamsError(f"params: ml.{name}.grid.{key} must be a non-empty list of values, got {values!r}")
        for v in values:
            try:
                _block_with(name, block, {key: v})
            except ParamsError as e:
                raise ParamsError(f"params: ml.{name}.grid.{key}: {v!r} is not a valid value ({e})") from None
    return grid


def candidates(name: str, ml: MlParams) -> list[dict[str, Any]]:
    """The parameter combinations the search tries (empty when there is no search):
    scikit-learn's ``ParameterGrid`` (``grid``) or ``ParameterSampler`` (``random``: ``search_iter``
    combinations drawn without replacement, seeded by ``ml.seed``)."""
    grid = validate_grid(name, ml)
    if ml.search == "none" or not grid:
        return []
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    full = ParameterGrid(grid)
    if ml.search == "random" and len(full) > ml.search_iter:
        return [dict(c) for c in ParameterSampler(grid, n_iter=ml.search_iter, random_state=ml.seed)]
    return [dict(c) for c in full]


def cap_calibration_folds(name: str, model: Any, y: np.ndarray) -> None:
    """svm's calibration folds: no more than the rarest genre has train tracks."""
    cv = model.get_params().get("cv")
    if isinstance(cv, int):
        counts = np.bincount(y)
        rarest = int(counts[counts > 0].min())
        if rarest < 2:
            raise DataError(f"{name}: a genre has a single train track; its probability calibration needs at "
                            f"least 2 per genre")
        if rarest < cv:
            model.set_params(cv=rarest)


def _candidate_estimator() -> type:
    """A scikit-learn estimator for one candidate (``overrides`` of the ``ml.<name>`` block), so
    that ``GridSearchCV`` clones, fits and scores candidates like any estimator."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Candidate(ClassifierMixin, BaseEstimator):
        def __init__(self, name: str = "logreg", ml: Any = None, n_jobs: int = 1, overrides: dict | None = None,
                     layout: Any = None):
            self.name, self.ml, self.n_jobs, self.overrides, self.layout = name, ml, n_jobs, overrides, layout

        def fit(self, X: np.ndarray, y: np.ndarray) -> Any:
            block = _block_with(self.name, getattr(self.ml, self.name), dict(self.overrides or {}))
            self.model_ = build(self.name, self.ml, n_jobs=self.n_jobs, block=block, layout=self.layout,
                                n_features=X.shape[1])
            cap_calibration_folds(self.name, self.model_, y)
            self.model_.fit(X, y)
            self.classes_ = self.model_.classes_
            return self

        def predict(self, X: np.ndarray) -> np.ndarray:
            return self.classes_[proba(self.model_, X).argmax(axis=1)]

    return Candidate


def search(
    name: str, X: np.ndarray, y: np.ndarray, ml: MlParams, *, n_jobs: int = 1, layout: Layout | None = None
) -> tuple[Any, dict[str, Any] | None]:
    """Cross-validated search on (X, y) - the train rows only - with scikit-learn's
    ``GridSearchCV`` over :func:`candidates` (stratified ``ml.search_cv`` folds, shuffled with
    ``ml.seed``; balanced accuracy; ties -> the first candidate). Returns the best params block
    (``ml.<name>`` itself when there is nothing to search) and a report."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    block = getattr(ml, name)
    combos = candidates(name, ml)
    if not combos:
        return block, None
    counts = np.bincount(y)
    if counts[counts > 0].min() < ml.search_cv:
        raise DataError(
            f"ml.search_cv={ml.search_cv} needs at least {ml.search_cv} train tracks per genre "
            f"(the smallest genre has {int(counts[counts > 0].min())}); lower ml.search_cv"
        )
    cv = StratifiedKFold(n_splits=ml.search_cv, shuffle=True, random_state=ml.seed)
    gs = GridSearchCV(_candidate_estimator()(name, ml, n_jobs, layout=layout), {"overrides": combos}, scoring="balanced_accuracy",
                      cv=cv, refit=False, error_score="raise")
    gs.fit(X, y)
    res = gs.cv_results_
    results = [{"params": dict(c), "mean": float(m), "std": float(s)}
               for c, m, s in zip(res["param_overrides"], res["mean_test_score"], res["std_test_score"])]
    best_i = int(np.argmax([r["mean"] for r in results]))  # ties -> first candidate
    report = {
        "method": ml.search,
        "cv": ml.search_cv,
        "scoring": "balanced_accuracy",
        "n_candidates": len(results),
        "best_params": results[best_i]["params"],
        "best_score": results[best_i]["mean"],
        "results": results,
    }
    return _block_with(name, block, results[best_i]["params"]), report
