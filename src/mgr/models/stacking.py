"""The stacked model ``fusion``: scikit-learn's ``StackingClassifier`` over classical base models
that each see one view of the track (handcrafted features, the pretrained embedding, its
taggram, or a ``+`` combination), combined by a logistic-regression meta-learner.

Protocol (``ml.fusion``; trained by :func:`mgr.models.classical.train` like any classical model,
on the rows it is given -- the non-test tracks of a fold -- and nothing else):

* base models ``ml.fusion.estimators``: ``<model>-<blocks>`` with a model from
  :data:`mgr.params.FUSION_BASES` (``svm``, ``logreg``, ``random_forest``; each configured by its
  ``ml.<model>`` block) and blocks of :data:`mgr.params.BLOCK_WORDS` joined by ``+``
  (:func:`mgr.params.resolve_blocks`). Each base selects its own columns of the fusion's table
  and standardises them per block (:func:`mgr.models.estimators.block_layout`). The svm bases are
  temperature-calibrated (their ``CalibratedClassifierCV``), so every base gives calibrated
  probabilities.
* ``StackingClassifier(stack_method="predict_proba", cv=ml.fusion.cv)`` (stratified folds): the
  meta-learner ``LogisticRegression(C=ml.fusion.C)`` is fitted on the **out-of-fold** probabilities
  of the bases (``cross_val_predict`` over the given rows), then every base is refitted on all of
  them. Test tracks never reach ``fit``, so neither the bases nor the meta-learner see them
  (``tests/test_stacking.py`` changes the test tracks and checks the model is bit-identical).
* The deep models (train-dl) are not bases: out-of-fold probabilities of a network need one
  training run per inner fold (5 x the train-dl cost, per outer fold), which the default pipeline
  cannot afford on 2 CPUs; the pretrained musicnn enters through its embedding and taggram instead.

ONNX: skl2onnx converts ``StackingClassifier``, ``ColumnTransformer`` and the pipelines, but not
``CalibratedClassifierCV(method="temperature")``; :func:`register_onnx` registers a converter for
it (the base estimator's decision values, ``Mul`` by the fitted ``beta``, ``Softmax``: exactly
scikit-learn's ``_TemperatureScaling``), so the whole stack is one graph written by
:func:`mgr.models.export.export_sklearn` and checked against ``predict_proba`` like every model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mgr.errors import DataError
from mgr.params import FeaturesParams, MlParams, parse_feature_sets, parse_fusion_estimator, resolve_blocks


def base_models(ml: MlParams, features: FeaturesParams) -> list[tuple[str, str, str]]:
    """``[(label, model, feature set)]`` of ``ml.fusion.estimators``; label ``<model>-<set>``
    (``logreg-musicnn_msd_tags``). Bases whose blocks resolve to nothing (``handcrafted`` when
    ``features.set`` holds only embeddings) are left out."""
    out = []
    for spec in ml.fusion.estimators:
        model, words = parse_fusion_estimator(spec)
        fs = resolve_blocks(words, features)
        if fs:
            out.append((f"{model}-{fs}", model, fs))
    if len(out) < 2:
        raise DataError(f"fusion: ml.fusion.estimators resolve to {len(out)} base model(s) with features.set "
                        f"{features.set!r}; it needs at least two")
    return out


def fusion_feature_set(ml: MlParams, features: FeaturesParams) -> str:
    """The feature sets the fusion's table columns hold: every base's, joined by ``+`` in order
    of first appearance."""
    sets: list[str] = []
    for _, _, fs in base_models(ml, features):
        sets += [s for s in parse_feature_sets(fs) if s not in sets]
    return "+".join(sets)


def build_fusion(ml: MlParams, features: FeaturesParams, columns: list[str], *, n_jobs: int = 1,
                 block: Any | None = None) -> Any:
    """An unfitted ``StackingClassifier`` over :func:`base_models` on a matrix whose columns are
    ``columns`` (those of :func:`fusion_feature_set`); ``block``: ``ml.fusion`` or a searched copy."""
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression

    from mgr.features.tables import feature_names
    from mgr.models.estimators import block_layout, build

    register_onnx()
    fp = block if block is not None else ml.fusion
    pos = {c: i for i, c in enumerate(columns)}
    bases = []
    for label, model, fs in base_models(ml, features):
        names = feature_names(fs)
        missing = [c for c in names if c not in pos]
        if missing:
            raise DataError(f"fusion: base {label} needs column {missing[0]!r}, which the table lacks "
                            f"(rerun the features stage: dvc repro features)")
        layout = [(b, [pos[names[i]] for i in ix]) for b, ix in block_layout(names)]
        bases.append((label, build(model, ml, n_jobs=n_jobs, layout=layout, n_features=len(columns))))
    meta = LogisticRegression(C=fp.C, max_iter=5000, random_state=ml.seed)
    # cv as an int: scikit-learn's StratifiedKFold without shuffling (deterministic; the rows come
    # sorted by track id), and no splitter object inside the saved model
    return StackingClassifier(bases, final_estimator=meta, stack_method="predict_proba", cv=int(fp.cv), n_jobs=1)


def cap_folds(model: Any, y: np.ndarray) -> None:
    """Fit ``model``'s inner folds to the rows it is about to see: the stacking folds to the
    rarest genre's count, each svm base's calibration folds to what one stacking fold leaves of it."""
    counts = np.bincount(y)
    rarest = int(counts[counts > 0].min())
    k = min(int(model.cv), rarest)
    if k < 2:
        raise DataError("fusion: a genre has a single training track; the out-of-fold stacking needs at least 2")
    model.set_params(cv=k)
    inner = rarest - -(-rarest // k)  # a genre's tracks in the smallest stacking training part
    for label, est in model.estimators:
        cv = est.get_params().get("cv")
        if isinstance(cv, int) and cv > inner:
            if inner < 2:
                raise DataError(f"fusion: base {label} calibrates on inner folds: it needs at least 3 training "
                                f"tracks per genre (the smallest genre has {rarest})")
            est.set_params(cv=inner)


# ----------------------------------------------------------------------------------- ONNX
_REGISTERED = False


def register_onnx() -> None:
    """Let skl2onnx convert ``CalibratedClassifierCV(method="temperature", ensemble=False)``
    anywhere in a model (other methods: skl2onnx's own converter)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common.data_types import Int64TensorType
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from skl2onnx.operator_converters.calibrated_classifier_cv import convert_sklearn_calibrated_classifier_cv
    from sklearn.calibration import CalibratedClassifierCV

    from mgr.models.export import _temperature_parts

    def convert(scope: Any, operator: Any, container: Any) -> None:
        model = operator.raw_operator
        parts = _temperature_parts(model)
        if parts is None:
            return convert_sklearn_calibrated_classifier_cv(scope, operator, container)
        base, beta = parts
        if len(model.classes_) != len(getattr(base, "classes_", model.classes_)) or len(model.classes_) < 3:
            raise DataError("fusion: ONNX export of a temperature-calibrated base needs 3 or more genres")
        final = base.steps[-1][1] if hasattr(base, "steps") else base
        container.add_options(id(final), {"raw_scores": True})
        scope.add_options(id(final), {"raw_scores": True})
        op = scope.declare_local_operator(sklearn_operator_name_map[type(base)], base)
        op.inputs = operator.inputs
        op.outputs.append(scope.declare_local_variable("tc_label", Int64TensorType()))
        decision = scope.declare_local_variable("tc_decision", operator.inputs[0].type.__class__())
        op.outputs.append(decision)
        beta_name = scope.get_unique_variable_name("tc_beta")
        container.add_initializer(beta_name, TensorProto.FLOAT, [1], [beta])
        scaled = scope.get_unique_variable_name("tc_scaled")
        container.add_node("Mul", [decision.full_name, beta_name], scaled, name=scope.get_unique_operator_name("TcMul"))
        proba = operator.outputs[1].full_name
        container.add_node("Softmax", [scaled], proba, axis=-1, name=scope.get_unique_operator_name("TcSoftmax"))
        classes = np.asarray(model.classes_).astype(np.int64)
        classes_name = scope.get_unique_variable_name("tc_classes")
        container.add_initializer(classes_name, TensorProto.INT64, [len(classes)], classes.tolist())
        argmax = scope.get_unique_variable_name("tc_argmax")
        container.add_node("ArgMax", [proba], argmax, axis=1, keepdims=0, name=scope.get_unique_operator_name("TcArgMax"))
        container.add_node("Gather", [classes_name, argmax], operator.outputs[0].full_name, axis=0,
                           name=scope.get_unique_operator_name("TcGather"))

    update_registered_converter(
        CalibratedClassifierCV, "SklearnCalibratedClassifierCV", calculate_linear_classifier_output_shapes, convert,
        options={"zipmap": [True, False, "columns"], "output_class_labels": [False, True], "nocl": [True, False]},
    )
    _REGISTERED = True
