"""Train-time export of fitted models to ONNX (``model.onnx``), the one format evaluate and
``mgr predict`` run (:class:`mgr.inference.runtime.OnnxModel`).

* :func:`export_keras`: a Keras 3 model (any number of inputs of any rank, any number of named
  outputs). The model's call is traced as a ``tf.function`` with a dynamic batch dimension, its
  variables are frozen into constants (``convert_variables_to_constants_v2``: Keras' own
  ``model.export(format="onnx")`` leaves e.g. ``Normalization`` constants as unfed graph inputs)
  and the frozen graph is converted by tf2onnx. The ONNX input is named ``input`` (several
  inputs: the Keras input names), the outputs carry the Keras output names (``genre``,
  ``tempo``, ``tags``, ...). Recurrent layers must be built with ``unroll=True`` (the deep
  registry does): a non-unrolled RNN becomes a TensorFlow ``While`` loop that tf2onnx turns into
  an ONNX ``Loop``/``Scan`` onnxruntime rejects ("Invalid tensor data type 0").
* :func:`export_sklearn`: a fitted scikit-learn classifier or pipeline (skl2onnx), or an XGBoost
  classifier (onnxmltools' converter registered with skl2onnx), with one float32 input ``input``
  ``(batch, n_features)`` and one output ``probabilities`` ``(batch, n_classes)`` (a plain
  tensor: ``zipmap=False``; the ``label`` output is dropped).

Both can check the written file against the source model on a sample (``sample=``) and refuse
to leave a file whose outputs differ by more than ``atol``. Everything heavy is imported inside
the functions; this module is never imported by ``mgr predict``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mgr.errors import ArtifactError
from mgr.inference.runtime import OnnxModel
from mgr.io import atomic_path

KERAS_OPSET = 17
ML_OPSET = 3  # ai.onnx.ml
PROBA_OUTPUT = "probabilities"
INPUT_NAME = "input"


# --------------------------------------------------------------------------- helpers
def _rename(model_proto: Any, mapping: dict[str, str]) -> None:
    """Rename tensors everywhere in the graph (node inputs/outputs, graph inputs/outputs)."""
    g = model_proto.graph
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
    for coll in (g.input, g.output, g.value_info):
        for v in coll:
            if v.name in mapping:
                v.name = mapping[v.name]


def _dynamic_batch(model_proto: Any) -> None:
    """Name the first dimension of every graph input/output ``batch`` (dynamic)."""
    for coll in (model_proto.graph.input, model_proto.graph.output):
        for v in coll:
            dims = v.type.tensor_type.shape.dim
            if len(dims):
                dims[0].Clear()
                dims[0].dim_param = "batch"


def canonicalize(model_proto: Any) -> None:
    """Give the graph position-based names, so the same model is the same bytes from any run.

    Converters name what they create from process-wide counters and UUIDs (skl2onnx names each
    graph with a fresh UUID; tf2onnx numbers its constants in an order that moves from process
    to process), which changed every ``model.onnx`` -- and its hash in the card and in
    ``dvc.lock`` -- on every run. Here every initializer becomes ``w<i>``, every intermediate
    tensor ``t<i>`` and every node ``n<i>`` in graph order (subgraphs included; graph inputs and
    outputs keep their names), and the graph name and doc strings are fixed. The computation is
    untouched."""
    g = model_proto.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    mapping: dict[str, str] = {}
    counters = {"w": 0, "t": 0, "n": 0}

    def new(kind: str) -> str:
        counters[kind] += 1
        return f"{kind}{counters[kind] - 1}"

    def walk(graph: Any) -> None:
        inits = {i.name for i in graph.initializer}
        for v in graph.input:  # a subgraph's formal inputs
            if v.name not in keep and v.name not in mapping:
                mapping[v.name] = new("t")
        for node in graph.node:  # initializers numbered by first use: their stored order varies too
            node.name = new("n")
            node.doc_string = ""
            for x in node.input:
                if x in inits and x not in keep and x not in mapping:
                    mapping[x] = new("w")
            for out in node.output:
                if out and out not in keep and out not in mapping:
                    mapping[out] = new("t")
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(sub)
        for init in graph.initializer:  # unused ones (none from our converters)
            if init.name not in keep and init.name not in mapping:
                mapping[init.name] = new("w")

    def apply(graph: Any) -> None:
        for init in graph.initializer:
            init.name = mapping.get(init.name, init.name)
        order = sorted(graph.initializer, key=lambda i: (not i.name.startswith("w"), int(i.name[1:]) if i.name[1:].isdigit() else 0, i.name))
        if [i.name for i in order] != [i.name for i in graph.initializer]:
            ordered = [type(order[0])() for _ in order]
            for dst, src in zip(ordered, order):
                dst.CopyFrom(src)
            del graph.initializer[:]
            graph.initializer.extend(ordered)
        for coll in (graph.input, graph.output, graph.value_info):
            for v in coll:
                v.name = mapping.get(v.name, v.name)
        for node in graph.node:
            node.input[:] = [mapping.get(x, x) for x in node.input]
            node.output[:] = [mapping.get(x, x) for x in node.output]
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    apply(sub)
        graph.doc_string = ""

    _canonical_order(g)
    walk(g)
    apply(g)
    g.name = "mgr"
    model_proto.doc_string = ""
    # skl2onnx lists the opsets from a set of domain names, whose order follows the process's
    # string hash seed (and may repeat one)
    opsets = sorted({(o.domain, o.version) for o in model_proto.opset_import})
    del model_proto.opset_import[:]
    for domain, version in opsets:
        model_proto.opset_import.add(domain=domain, version=version)


def _canonical_order(graph: Any) -> None:
    """Reorder ``graph.node`` topologically with ties broken by structure, not by name: a ready
    node's key is (its inputs as "output of the i-th emitted node" / initializer content / graph
    input, op type, attributes). Converters emit a valid order that varies between runs."""
    import hashlib
    import heapq

    nodes = list(graph.node)
    produced = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    inits = {}
    for init in graph.initializer:
        c = type(init)()
        c.CopyFrom(init)
        c.name = ""
        inits[init.name] = hashlib.sha256(c.SerializeToString()).hexdigest()

    def refs(n: Any) -> list[str]:  # inputs, and names a subgraph reads from this scope
        out = list(n.input)
        for attr in n.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                out += [x for sn in sub.node for x in sn.input]
        return out

    deps = [{produced[x] for x in refs(n) if x in produced and produced[x] != i} for i, n in enumerate(nodes)]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    pos: dict[str, int] = {}
    attrs = [b"".join(a.SerializeToString() for a in n.attribute) for n in nodes]

    def key(i: int) -> tuple:
        n = nodes[i]
        ins = tuple(("t", pos[x]) if x in pos else ("w", inits[x]) if x in inits else ("i", x) for x in n.input)
        return (ins, n.op_type, n.domain, attrs[i])

    waiting = [len(d) for d in deps]
    heap = [(key(i), i) for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(i)
        for out in nodes[i].output:
            if out:
                pos[out] = len(pos)
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(heap, (key(u), u))
    if len(order) != len(nodes):  # not a DAG in graph order (cannot happen for a checked model): keep it
        return
    ordered = [type(nodes[0])() for _ in nodes]
    for dst, i in zip(ordered, order):
        dst.CopyFrom(nodes[i])
    del graph.node[:]
    graph.node.extend(ordered)


def _write(model_proto: Any, path: str | Path) -> Path:
    import onnx

    canonicalize(model_proto)
    onnx.checker.check_model(model_proto)
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(model_proto.SerializeToString())
    return path


def _check_parity(path: Path, feeds: dict[str, np.ndarray], want: dict[str, np.ndarray], atol: float, what: str) -> float:
    m = OnnxModel(path, threads=1)
    got = m.run_feeds(feeds)
    worst = 0.0
    for k, ref in want.items():
        d = float(np.max(np.abs(np.asarray(got[k], np.float64) - np.asarray(ref, np.float64)))) if np.size(ref) else 0.0
        worst = max(worst, d)
        if not d <= atol:
            Path(path).unlink(missing_ok=True)
            raise ArtifactError(f"ONNX export of {what}: output {k!r} differs from the source model by {d:.3g} (> {atol:g})")
    return worst


# ----------------------------------------------------------------------------- keras
def export_keras(model: Any, path: str | Path, *, sample: Any = None, atol: float = 1e-4, opset: int = KERAS_OPSET) -> None:
    """Write ``model`` (a built Keras 3 model) as ONNX to ``path`` (atomically).

    Input ``input`` (or the Keras input names when there are several), dynamic batch; outputs
    named like the Keras outputs. With ``sample`` (an array, or a list for several inputs) the
    written file is run on it and compared with ``model(sample)``; a difference above ``atol``
    removes the file and raises :class:`ArtifactError`.
    """
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    tf2onnx.logging.set_level(logging.ERROR)
    inputs = list(model.inputs)
    in_names = [INPUT_NAME] if len(inputs) == 1 else [str(t.name).split(":")[0] for t in inputs]
    specs = [
        tf.TensorSpec((None, *tuple(t.shape[1:])), dtype=getattr(t, "dtype", "float32") or "float32", name=n)
        for t, n in zip(inputs, in_names)
    ]

    def call(*xs):
        return model(xs[0] if len(xs) == 1 else list(xs), training=False)

    concrete = tf.function(call).get_concrete_function(*specs)
    structure = concrete.structured_outputs
    if isinstance(structure, dict):
        out_names = sorted(structure)  # tf.nest flattens dicts in sorted key order
    else:
        flat = tf.nest.flatten(structure)
        out_names = list(getattr(model, "output_names", None) or [])[: len(flat)]
        if len(out_names) != len(flat):
            out_names = [f"output_{i}" for i in range(len(flat))]
    frozen = convert_variables_to_constants_v2(concrete)
    tf_in = [t.name for t in frozen.inputs]
    tf_out = [t.name for t in frozen.outputs]
    if len(tf_in) != len(in_names) or len(tf_out) != len(out_names):
        raise ArtifactError(
            f"ONNX export of {model.name}: unexpected frozen graph ({len(tf_in)} inputs, {len(tf_out)} outputs)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=tf_in, output_names=tf_out, opset=opset
        )
    mapping = dict(zip(tf_in, in_names))
    if len(set(tf_out)) == len(tf_out):
        mapping.update(zip(tf_out, out_names))
        _rename(proto, mapping)
    else:  # one tensor behind several outputs: Identity nodes give each its own name
        import onnx

        _rename(proto, mapping)
        del proto.graph.output[:]
        for src, dst in zip(tf_out, out_names):
            proto.graph.node.append(onnx.helper.make_node("Identity", [src], [dst], name=f"out_{dst}"))
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(dst))
    _dynamic_batch(proto)
    proto.producer_name = "mgr"
    path = _write(proto, path)
    if sample is not None:
        xs = list(sample) if isinstance(sample, (list, tuple)) else [sample]
        xs = [np.asarray(x, dtype=np.float32) for x in xs]
        ref = call(*[tf.constant(x) for x in xs])
        if isinstance(ref, dict):
            want = {k: np.asarray(v) for k, v in ref.items()}
        else:
            want = dict(zip(out_names, [np.asarray(v) for v in tf.nest.flatten(ref)]))
        _check_parity(path, dict(zip(in_names, xs)), want, atol, f"Keras model {model.name!r}")


# --------------------------------------------------------------------- scikit-learn
_XGB_REGISTERED = False


def _register_xgboost() -> None:
    """Let skl2onnx convert ``xgboost.XGBClassifier`` (alone or inside a Pipeline) through
    onnxmltools' converter."""
    global _XGB_REGISTERED
    if _XGB_REGISTERED:
        return
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
    )
    from xgboost import XGBClassifier

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    _XGB_REGISTERED = True


def _uses_xgboost(model: Any) -> bool:
    steps = getattr(model, "steps", None)
    parts = [s[1] for s in steps] if steps else [model]
    return any(type(p).__module__.startswith("xgboost") for p in parts)


def _temperature_parts(model: Any) -> tuple[Any, float] | None:
    """``(base estimator, beta)`` of a ``CalibratedClassifierCV(method="temperature",
    ensemble=False)`` (one calibrated classifier), else ``None``. Public attributes only."""
    if type(model).__name__ != "CalibratedClassifierCV" or getattr(model, "method", None) != "temperature":
        return None
    members = list(getattr(model, "calibrated_classifiers_", []))
    if len(members) != 1 or len(members[0].calibrators) != 1:
        raise ArtifactError("ONNX export: temperature calibration is supported with ensemble=False only")
    return members[0].estimator, float(np.asarray(members[0].calibrators[0].beta_))


def export_sklearn(model: Any, n_features: int, path: str | Path, *, sample: Any = None, atol: float = 1e-4) -> None:
    """Write a fitted classifier (scikit-learn estimator/pipeline, or XGBoost) as ONNX to ``path``.

    One float32 input ``input`` ``(batch, n_features)``; one output ``probabilities``
    ``(batch, n_classes)``, columns in ``model.classes_`` order. With ``sample`` (rows of
    features) the file is checked against ``model.predict_proba`` within ``atol``.

    ``CalibratedClassifierCV(method="temperature", ensemble=False)`` (which skl2onnx does not
    convert) is written as its base estimator's decision function (skl2onnx ``raw_scores``; a
    binary one as the logits ``(-d, d)``, as scikit-learn does) followed by ``Softmax(beta * d)``:
    exactly scikit-learn's ``_TemperatureScaling.predict``.
    """
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    if _uses_xgboost(model):
        _register_xgboost()
    temperature = _temperature_parts(model)
    target, options = model, {"zipmap": False}
    if temperature is not None:
        target = temperature[0]
        final = target.steps[-1][1] if hasattr(target, "steps") else target
        options = {type(final): {"raw_scores": True, "zipmap": False}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. scikit-learn's deprecation notes on attributes read
        proto = convert_sklearn(
            target,
            initial_types=[(INPUT_NAME, FloatTensorType([None, int(n_features)]))],
            options=options,
            target_opset={"": KERAS_OPSET, "ai.onnx.ml": ML_OPSET},
        )
    if temperature is not None:  # raw decision values -> softmax(beta * d)
        g = proto.graph
        _rename(proto, {PROBA_OUTPUT: "decision"})
        g.initializer.append(onnx.numpy_helper.from_array(np.array([temperature[1]], np.float32), "temperature_beta"))
        g.node.append(onnx.helper.make_node("Mul", ["decision", "temperature_beta"], ["scaled_decision"], name="temperature_mul"))
        g.node.append(onnx.helper.make_node("Softmax", ["scaled_decision"], [PROBA_OUTPUT], axis=-1, name="temperature_softmax"))
        for o in g.output:
            if o.name == "decision":
                o.name = PROBA_OUTPUT
    outs = [o.name for o in proto.graph.output]
    if PROBA_OUTPUT not in outs:
        raise ArtifactError(f"ONNX export of {type(model).__name__}: no {PROBA_OUTPUT!r} output (got {outs})")
    keep = [o for o in proto.graph.output if o.name == PROBA_OUTPUT]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    _dynamic_batch(proto)
    proto.producer_name = "mgr"
    path = _write(proto, path)
    if sample is not None:
        X = np.atleast_2d(np.asarray(sample, dtype=np.float64))
        want = {PROBA_OUTPUT: np.asarray(model.predict_proba(X), np.float64)}
        _check_parity(path, {INPUT_NAME: X.astype(np.float32)}, want, atol, type(model).__name__)
