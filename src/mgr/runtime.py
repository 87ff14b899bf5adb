"""A light NumPy inference runtime for the Keras models that ``mgr`` trains.

Importing TensorFlow costs several seconds, which dominates ``mgr predict`` on one clip. This
module runs a saved ``.keras`` file with NumPy alone: it reads the archive's ``config.json``
(plain JSON) and ``model.weights.h5`` (plain arrays, through h5py) and evaluates the layer graph
itself. Nothing in the file is executed: only layer classes from the whitelist below, with their
documented configuration, are understood. The ``.keras`` file stays the source of truth; a model
that uses anything this runtime does not implement is reported by :func:`unsupported_layers`
and the caller falls back to Keras (``safe_mode=True``).

Agreement with Keras is tested (``tests/test_predict.py``): outputs match within
``ATOL = 1e-4`` (absolute, on softmax/sigmoid probabilities) for every supported layer.

Public API: :class:`NumpyModel` (``NumpyModel.load(path)``, ``.predict(x) -> dict``,
``.output_names``, ``.input_shape``), :func:`read_keras_config`, :func:`unsupported_layers`,
:data:`SUPPORTED_LAYERS`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mgr.errors import ArtifactError

ATOL = 1e-4

#: Members a Keras 3 ``.keras`` archive may contain (anything else means it is not a plain save).
KERAS_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}


def read_keras_config(path: str | Path) -> dict:
    """Return the model config of a ``.keras`` archive, checking it is a plain Keras save.

    Raises :class:`ArtifactError` for a file that is not a zip, has unexpected members, or has
    no readable ``config.json``. Reads JSON only: no code from the file runs.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            extra = {n for n in names if n not in KERAS_MEMBERS and not n.startswith("assets/")}
            if extra:
                raise ArtifactError(f"{path}: unexpected members in the Keras archive: {sorted(extra)[:3]}")
            if "config.json" not in names or "model.weights.h5" not in names:
                raise ArtifactError(f"{path}: not a Keras 3 model archive (no config.json / model.weights.h5)")
            config = json.loads(zf.read("config.json"))
    except zipfile.BadZipFile:
        raise ArtifactError(f"{path}: not a Keras model archive (not a zip file)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtifactError(f"{path}: config.json in the Keras archive is not valid JSON") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ArtifactError(f"{path}: config.json in the Keras archive is not a model config")
    return config


# ----------------------------------------------------------------------------- activations
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _gelu(x: np.ndarray) -> np.ndarray:  # keras default approximate=False -> erf form
    from math import erf, sqrt

    v = np.vectorize(erf, otypes=[np.float32])
    return 0.5 * x * (1.0 + v(x / sqrt(2.0)))


ACTIVATIONS: dict[str, Any] = {
    "linear": lambda x: x,
    None: lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0))),
    "softplus": lambda x: np.logaddexp(0, x),
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "gelu": _gelu,
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
}


def _activation(spec: Any) -> Any:
    if isinstance(spec, dict):  # serialized function: {"module": "keras.activations", "config": name}
        spec = spec.get("config", spec.get("class_name"))
        if isinstance(spec, dict):
            spec = spec.get("name")
    if spec not in ACTIVATIONS:
        raise _Unsupported(f"activation {spec!r}")
    return ACTIVATIONS[spec]


class _Unsupported(Exception):
    pass


# ------------------------------------------------------------------------------- helpers
def _pad_same(n: int, k: int, s: int, d: int = 1) -> tuple[int, int, int]:
    """TensorFlow 'same' padding: (out, pad_before, pad_after)."""
    k_eff = (k - 1) * d + 1
    out = -(-n // s)
    total = max((out - 1) * s + k_eff - n, 0)
    return out, total // 2, total - total // 2


def _pair(v: Any, n: int = 2) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        return tuple(int(a) for a in v)
    return (int(v),) * n


def _conv2d(x: np.ndarray, kernel: np.ndarray, strides, padding: str, dilation) -> np.ndarray:
    """x (B, H, W, C), kernel (kh, kw, C, O) -> (B, H', W', O). One matmul per kernel tap."""
    kh, kw, _, o = kernel.shape
    sh, sw = strides
    dh, dw = dilation
    b, h, w, _ = x.shape
    if padding == "same":
        oh, ph0, ph1 = _pad_same(h, kh, sh, dh)
        ow, pw0, pw1 = _pad_same(w, kw, sw, dw)
        if ph0 or ph1 or pw0 or pw1:
            x = np.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
    elif padding == "valid":
        oh = (h - ((kh - 1) * dh + 1)) // sh + 1
        ow = (w - ((kw - 1) * dw + 1)) // sw + 1
    else:
        raise _Unsupported(f"padding {padding!r}")
    out = np.zeros((b, oh, ow, o), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :]
            out += patch @ kernel[i, j]
    return out


def _pool2d(x: np.ndarray, pool, strides, padding: str, op: str) -> np.ndarray:
    ph, pw = pool
    sh, sw = strides
    b, h, w, c = x.shape
    if padding == "same":
        oh, a0, a1 = _pad_same(h, ph, sh)
        ow, b0, b1 = _pad_same(w, pw, sw)
        fill = -np.inf if op == "max" else np.nan
        x = np.pad(x, ((0, 0), (a0, a1), (b0, b1), (0, 0)), constant_values=fill)
    else:
        oh = (h - ph) // sh + 1
        ow = (w - pw) // sw + 1
    taps = [
        x[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :] for i in range(ph) for j in range(pw)
    ]
    st = np.stack(taps, axis=0)
    if op == "max":
        return st.max(axis=0)
    return np.nanmean(st, axis=0) if padding == "same" else st.mean(axis=0)


# -------------------------------------------------------------------------------- layers
class _Layer:
    n_vars = 0

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.name = cfg.get("name", "")
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise _Unsupported("data_format channels_first")

    def set_weights(self, ws: list[np.ndarray]) -> None:
        self.w = ws

    def __call__(self, *xs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class _Identity(_Layer):
    def __call__(self, x):
        return x


class _Dense(_Layer):
    def __call__(self, x):
        y = x @ self.w[0]
        if self.cfg.get("use_bias", True):
            y = y + self.w[1]
        return _activation(self.cfg.get("activation")).__call__(y).astype(np.float32)


class _Conv2D(_Layer):
    def __call__(self, x):
        if int(self.cfg.get("groups", 1)) != 1:
            raise _Unsupported("grouped convolution")
        y = _conv2d(x, self.w[0], _pair(self.cfg.get("strides", 1)), self.cfg.get("padding", "valid"),
                    _pair(self.cfg.get("dilation_rate", 1)))
        if self.cfg.get("use_bias", True):
            y = y + self.w[1]
        return _activation(self.cfg.get("activation")).__call__(y).astype(np.float32)


class _Conv1D(_Layer):
    def __call__(self, x):
        if self.cfg.get("padding") == "causal" or int(self.cfg.get("groups", 1)) != 1:
            raise _Unsupported("causal or grouped Conv1D")
        k = self.w[0][None]  # (1, k, C, O)
        y = _conv2d(x[:, None], k, (1, _pair(self.cfg.get("strides", 1), 1)[0]), self.cfg.get("padding", "valid"),
                    (1, _pair(self.cfg.get("dilation_rate", 1), 1)[0]))[:, 0]
        if self.cfg.get("use_bias", True):
            y = y + self.w[1]
        return _activation(self.cfg.get("activation")).__call__(y).astype(np.float32)


class _BatchNorm(_Layer):
    def __call__(self, x):
        ws = list(self.w)
        gamma = ws.pop(0) if self.cfg.get("scale", True) else 1.0
        beta = ws.pop(0) if self.cfg.get("center", True) else 0.0
        mean, var = ws[0], ws[1]
        axis = self.cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) else axis
        shape = [1] * x.ndim
        shape[axis] = -1
        inv = (gamma / np.sqrt(var + self.cfg.get("epsilon", 1e-3))).astype(np.float32)
        return (x - mean.reshape(shape)) * np.reshape(inv, shape) + np.reshape(beta, shape) if np.ndim(beta) else (
            (x - mean.reshape(shape)) * np.reshape(inv, shape) + beta
        )


class _Normalization(_Layer):
    """keras.layers.Normalization: (x - mean) / max(sqrt(var), 1e-7) along ``axis``."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.get("invert"):
            raise _Unsupported("Normalization(invert=True)")

    def __call__(self, x):
        if self.cfg.get("mean") is not None:
            mean = np.asarray(self.cfg["mean"], np.float32)
            var = np.asarray(self.cfg["variance"], np.float32)
        elif len(self.w) >= 2:
            mean, var = self.w[0], self.w[1]
        else:
            raise ArtifactError(f"Normalization layer {self.name!r} has neither config statistics nor weights")
        axis = self.cfg.get("axis", -1)
        axes = [axis] if isinstance(axis, int) else list(axis or [])
        shape = [1] * x.ndim
        for a in axes:
            shape[a] = x.shape[a]
        mean = mean.reshape(shape) if mean.size > 1 else mean
        var = var.reshape(shape) if var.size > 1 else var
        return ((x - mean) / np.maximum(np.sqrt(var), np.float32(1e-7))).astype(np.float32)


class _LayerNorm(_Layer):
    def __call__(self, x):
        axis = self.cfg.get("axis", -1)
        axes = tuple(axis) if isinstance(axis, list) else (axis,)
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(var + self.cfg.get("epsilon", 1e-3))
        ws = list(self.w)
        if self.cfg.get("scale", True):
            y = y * ws.pop(0)
        if self.cfg.get("center", True):
            y = y + ws.pop(0)
        return y.astype(np.float32)


class _Activation(_Layer):
    def __call__(self, x):
        return _activation(self.cfg.get("activation")).__call__(x).astype(np.float32)


class _ReLU(_Layer):
    def __call__(self, x):
        if self.cfg.get("max_value") is not None or self.cfg.get("threshold", 0.0) or self.cfg.get("negative_slope", 0.0):
            raise _Unsupported("ReLU with max_value/threshold/negative_slope")
        return np.maximum(x, 0)


class _LeakyReLU(_Layer):
    def __call__(self, x):
        a = self.cfg.get("negative_slope", self.cfg.get("alpha", 0.3))
        return np.where(x > 0, x, a * x).astype(np.float32)


class _ELU(_Layer):
    def __call__(self, x):
        a = self.cfg.get("alpha", 1.0)
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))).astype(np.float32)


class _Softmax(_Layer):
    def __call__(self, x):
        return _softmax(x, axis=self.cfg.get("axis", -1)).astype(np.float32)


class _Flatten(_Layer):
    def __call__(self, x):
        return x.reshape(x.shape[0], -1)


class _Reshape(_Layer):
    def __call__(self, x):
        return x.reshape((x.shape[0], *self.cfg["target_shape"]))


class _Permute(_Layer):
    def __call__(self, x):
        return np.transpose(x, (0, *self.cfg["dims"]))


class _MaxPool2D(_Layer):
    op = "max"

    def __call__(self, x):
        pool = _pair(self.cfg.get("pool_size", 2))
        strides = self.cfg.get("strides") or pool
        return _pool2d(x, pool, _pair(strides), self.cfg.get("padding", "valid"), self.op)


class _AvgPool2D(_MaxPool2D):
    op = "avg"


class _MaxPool1D(_Layer):
    op = "max"

    def __call__(self, x):
        pool = _pair(self.cfg.get("pool_size", 2), 1)[0]
        strides = self.cfg.get("strides") or pool
        return _pool2d(x[:, None], (1, pool), (1, _pair(strides, 1)[0]), self.cfg.get("padding", "valid"), self.op)[:, 0]


class _AvgPool1D(_MaxPool1D):
    op = "avg"


class _GlobalPool(_Layer):
    def __init__(self, cfg, op, ndim):
        super().__init__(cfg)
        self.op, self.ndim = op, ndim

    def __call__(self, x):
        axes = tuple(range(1, 1 + self.ndim))
        keep = bool(self.cfg.get("keepdims", False))
        return (x.max(axis=axes, keepdims=keep) if self.op == "max" else x.mean(axis=axes, keepdims=keep))


class _Concatenate(_Layer):
    def __call__(self, *xs):
        return np.concatenate(xs, axis=self.cfg.get("axis", -1))


class _Merge(_Layer):
    def __init__(self, cfg, op):
        super().__init__(cfg)
        self.op = op

    def __call__(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = self.op(out, x)
        return out


class _Average(_Layer):
    def __call__(self, *xs):
        return np.mean(np.stack(xs), axis=0)


def _check_rnn_cfg(cfg: dict, reverse: bool) -> None:
    if cfg.get("go_backwards") and not reverse:  # only as the backward half of Bidirectional
        raise _Unsupported("go_backwards RNN")
    if cfg.get("stateful") or cfg.get("unroll"):
        raise _Unsupported("stateful/unrolled RNN")


class _GRU(_Layer):
    def __call__(self, x, reverse: bool = False):
        _check_rnn_cfg(self.cfg, reverse)
        kernel, rkernel = self.w[0], self.w[1]
        use_bias = self.cfg.get("use_bias", True)
        reset_after = self.cfg.get("reset_after", True)
        units = int(self.cfg["units"])
        act = _activation(self.cfg.get("activation", "tanh"))
        ract = _activation(self.cfg.get("recurrent_activation", "sigmoid"))
        if use_bias:
            bias = self.w[2]
            if reset_after:
                b_in, b_rec = bias[0], bias[1]
            else:
                b_in, b_rec = bias, np.zeros(3 * units, np.float32)
        else:
            b_in = b_rec = np.zeros(3 * units, np.float32)
        xs = x @ kernel + b_in  # (B, T, 3u)
        b, t = x.shape[0], x.shape[1]
        h = np.zeros((b, units), np.float32)
        outs = []
        order = range(t - 1, -1, -1) if reverse else range(t)
        for i in order:
            xz, xr, xh = np.split(xs[:, i], 3, axis=-1)
            if reset_after:
                hh = h @ rkernel + b_rec
                hz, hr, hhh = np.split(hh, 3, axis=-1)
                z = ract(xz + hz)
                r = ract(xr + hr)
                cand = act(xh + r * hhh)
            else:
                z = ract(xz + h @ rkernel[:, :units])
                r = ract(xr + h @ rkernel[:, units : 2 * units])
                cand = act(xh + (r * h) @ rkernel[:, 2 * units :])
            h = (z * h + (1 - z) * cand).astype(np.float32)
            outs.append(h)
        return _rnn_output(outs, h, reverse, self.cfg.get("return_sequences", False))


def _rnn_output(outs: list, h: np.ndarray, reverse: bool, return_sequences: bool) -> np.ndarray:
    """Keras' RNN output: the sequence in input order, or the last step's state (for a reversed
    pass, the state after the whole sequence was read, i.e. at input position 0)."""
    if reverse:
        outs = outs[::-1]
    if return_sequences:
        return np.stack(outs, axis=1)
    return outs[0] if reverse else h


class _LSTM(_Layer):
    def __call__(self, x, reverse: bool = False):
        _check_rnn_cfg(self.cfg, reverse)
        kernel, rkernel = self.w[0], self.w[1]
        units = int(self.cfg["units"])
        bias = self.w[2] if self.cfg.get("use_bias", True) else np.zeros(4 * units, np.float32)
        act = _activation(self.cfg.get("activation", "tanh"))
        ract = _activation(self.cfg.get("recurrent_activation", "sigmoid"))
        xs = x @ kernel + bias
        b, t = x.shape[0], x.shape[1]
        h = np.zeros((b, units), np.float32)
        c = np.zeros((b, units), np.float32)
        outs = []
        order = range(t - 1, -1, -1) if reverse else range(t)
        for i in order:
            z = xs[:, i] + h @ rkernel
            zi, zf, zc, zo = np.split(z, 4, axis=-1)
            c = ract(zf) * c + ract(zi) * act(zc)
            h = (ract(zo) * act(c)).astype(np.float32)
            outs.append(h)
        return _rnn_output(outs, h, reverse, self.cfg.get("return_sequences", False))


class _Bidirectional(_Layer):
    def __init__(self, cfg):
        super().__init__(cfg)
        inner = cfg["layer"]
        cls = inner.get("class_name")
        if cls not in ("GRU", "LSTM"):
            raise _Unsupported(f"Bidirectional({cls})")
        self.fw = (_GRU if cls == "GRU" else _LSTM)(inner["config"])
        bw_cfg = dict(cfg.get("backward_layer", {}).get("config", inner["config"]))
        self.bw = (_GRU if cls == "GRU" else _LSTM)(bw_cfg)
        self.merge = cfg.get("merge_mode", "concat")
        self.n_fw = 3 if inner["config"].get("use_bias", True) else 2

    def set_weights(self, ws):
        half = len(ws) // 2
        self.fw.set_weights(ws[:half])
        self.bw.set_weights(ws[half:])

    def __call__(self, x):
        a = self.fw(x)
        b = self.bw(x, reverse=True)
        if self.merge == "concat":
            return np.concatenate([a, b], axis=-1)
        if self.merge == "sum":
            return a + b
        if self.merge == "ave":
            return (a + b) / 2
        if self.merge == "mul":
            return a * b
        raise _Unsupported(f"merge_mode {self.merge!r}")


LAYERS: dict[str, Any] = {
    "InputLayer": _Identity,
    "Dropout": _Identity,
    "SpatialDropout1D": _Identity,
    "SpatialDropout2D": _Identity,
    "GaussianNoise": _Identity,
    "GaussianDropout": _Identity,
    "ActivityRegularization": _Identity,
    "Dense": _Dense,
    "Conv2D": _Conv2D,
    "Conv1D": _Conv1D,
    "BatchNormalization": _BatchNorm,
    "LayerNormalization": _LayerNorm,
    "Normalization": _Normalization,
    "Activation": _Activation,
    "ReLU": _ReLU,
    "LeakyReLU": _LeakyReLU,
    "ELU": _ELU,
    "Softmax": _Softmax,
    "Flatten": _Flatten,
    "Reshape": _Reshape,
    "Permute": _Permute,
    "MaxPooling2D": _MaxPool2D,
    "AveragePooling2D": _AvgPool2D,
    "MaxPooling1D": _MaxPool1D,
    "AveragePooling1D": _AvgPool1D,
    "GlobalAveragePooling2D": lambda c: _GlobalPool(c, "avg", 2),
    "GlobalMaxPooling2D": lambda c: _GlobalPool(c, "max", 2),
    "GlobalAveragePooling1D": lambda c: _GlobalPool(c, "avg", 1),
    "GlobalMaxPooling1D": lambda c: _GlobalPool(c, "max", 1),
    "Concatenate": _Concatenate,
    "Add": lambda c: _Merge(c, np.add),
    "Subtract": lambda c: _Merge(c, np.subtract),
    "Multiply": lambda c: _Merge(c, np.multiply),
    "Maximum": lambda c: _Merge(c, np.maximum),
    "Minimum": lambda c: _Merge(c, np.minimum),
    "Average": _Average,
    "GRU": _GRU,
    "LSTM": _LSTM,
    "Bidirectional": _Bidirectional,
}
SUPPORTED_LAYERS = frozenset(LAYERS)
_WEIGHTLESS = {"InputLayer", "Normalization", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
               "ActivityRegularization", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Flatten", "Reshape",
               "Permute", "MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D",
               "GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalMaxPooling1D",
               "Concatenate", "Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}


def _layer_list(config: dict) -> list[dict]:
    cls = config.get("class_name")
    if cls not in ("Functional", "Sequential", "Model"):
        raise _Unsupported(f"model class {cls!r}")
    layers = config.get("config", {}).get("layers")
    if not isinstance(layers, list):
        raise _Unsupported("model config without a layer list")
    return layers


def unsupported_layers(config: dict) -> list[str]:
    """Layer classes (or other features) in a Keras model config this runtime cannot run."""
    try:
        layers = _layer_list(config)
    except _Unsupported as e:
        return [str(e)]
    bad = []
    for lc in layers:
        cls = lc.get("class_name")
        module = lc.get("module") or "keras.layers"
        if cls not in LAYERS or not str(module).startswith("keras"):
            bad.append(f"{module}.{cls}" if lc.get("module") else str(cls))
            continue
        try:
            LAYERS[cls](lc.get("config", {}))
        except _Unsupported as e:
            bad.append(f"{cls} ({e})")
        if cls in ("GRU", "LSTM") and (lc.get("config", {}).get("go_backwards") or lc.get("config", {}).get("stateful")):
            bad.append(f"{cls} (go_backwards/stateful)")
        if cls in ("Dense", "Conv2D", "Conv1D", "Activation"):
            try:
                _activation(lc.get("config", {}).get("activation"))
            except _Unsupported as e:
                bad.append(f"{cls} ({e})")
    return bad


def _snake(name: str) -> str:
    import re

    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _inbound(node: Any) -> list[tuple[str, int, int]]:
    """Parse one inbound node of a Keras 3 (or 2) functional config into (layer, node, tensor) refs."""
    refs: list[tuple[str, int, int]] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                h = obj["config"]["keras_history"]
                refs.append((h[0], int(h[1]), int(h[2])))
                return
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int) and isinstance(obj[2], int):
                refs.append((obj[0], obj[1], obj[2]))  # Keras 2 style [name, node, tensor, kwargs]
                return
            for v in obj:
                walk(v)

    if isinstance(node, dict) and "args" in node:
        walk(node.get("args", []))
    else:
        walk(node)
    return refs


class NumpyModel:
    """A Keras functional/sequential model evaluated with NumPy (see the module docstring)."""

    def __init__(self, config: dict, weights: dict[str, list[np.ndarray]]):
        bad = unsupported_layers(config)
        if bad:
            raise ArtifactError(f"model uses layers the NumPy runtime does not support: {', '.join(bad[:5])}")
        self.config = config
        self.kind = config["class_name"]
        layer_cfgs = _layer_list(config)
        self.layers: list[tuple[str, dict, _Layer]] = []
        for lc in layer_cfgs:
            layer = LAYERS[lc["class_name"]](lc.get("config", {}))
            name = lc.get("config", {}).get("name") or lc.get("name")
            self.layers.append((name, lc, layer))
        self._assign_weights(weights)
        cfg = config["config"]
        if self.kind == "Sequential":
            self.input_names = [self.layers[0][0]]
            self.output_names = [self.layers[-1][0]]
            self.output_keys = list(self.output_names)
        else:
            self.input_names = [r[0] for r in _inbound(cfg.get("input_layers", []))] or [cfg["input_layers"][0][0]]
            outs = cfg.get("output_layers", [])
            self.output_names = [r[0] for r in _inbound(outs)]
            # dict outputs: {"genre": ref, ...} -> keep the dict keys as the names callers use
            self.output_keys = list(outs) if isinstance(outs, dict) else self.output_names
            if not self.output_names:
                raise ArtifactError("model config names no output layers")
        self.input_shape = None
        for _, lc, _ in self.layers:
            shape = lc.get("config", {}).get("batch_shape") or lc.get("config", {}).get("batch_input_shape")
            if shape:
                self.input_shape = tuple(shape[1:])
                break

    def _assign_weights(self, weights: dict[str, list[np.ndarray]]) -> None:
        """Match h5 groups ``layers/<snake_class>[_n]`` to the layers in order (Keras 3 layout)."""
        counts: dict[str, int] = {}
        for name, lc, layer in self.layers:
            cls = lc["class_name"]
            base = _snake(cls)
            n = counts.get(base, 0)
            counts[base] = n + 1
            key = base if n == 0 else f"{base}_{n}"
            if key not in weights and name in weights:
                key = name
            ws = weights.get(key, [])
            if cls not in _WEIGHTLESS and not ws:
                raise ArtifactError(f"no weights for layer {name!r} ({cls}) in the weights file")
            layer.set_weights(ws)

    @classmethod
    def load(cls, path: str | Path) -> NumpyModel:
        """Load a ``.keras`` file (config + weights); raises ArtifactError if it cannot run here."""
        import h5py

        path = Path(path)
        config = read_keras_config(path)
        weights: dict[str, list[np.ndarray]] = {}
        with zipfile.ZipFile(path) as zf, zf.open("model.weights.h5") as fh:
            import io

            buf = io.BytesIO(fh.read())
        try:
            with h5py.File(buf, "r") as f:
                root = f["layers"] if "layers" in f else f
                for key in root:
                    weights[key] = _collect_vars(root[key])
        except (OSError, KeyError) as e:
            raise ArtifactError(f"{path}: cannot read the model weights ({e})") from None
        return cls(config, weights)

    def predict(self, x: np.ndarray, batch_size: int = 16) -> dict[str, np.ndarray]:
        """Run the model on ``x`` (batch first); returns {output name: array}.

        Output names are the keys of a dict-output model, else the output layers' names.
        """
        x = np.asarray(x, dtype=np.float32)
        outs: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for s in range(0, len(x), batch_size):
            res = self._forward(x[s : s + batch_size])
            for n in self.output_names:
                outs[n].append(res[n])
        return {k: np.concatenate(outs[n]) for k, n in zip(self.output_keys, self.output_names)}

    def _forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.kind == "Sequential":
            h = x
            for _, _, layer in self.layers:
                h = layer(h)
            return {self.output_names[0]: h}
        values: dict[tuple[str, int], np.ndarray] = {}
        for name, lc, layer in self.layers:
            if lc["class_name"] == "InputLayer":
                values[(name, 0)] = x
                continue
            nodes = lc.get("inbound_nodes", [])
            if len(nodes) != 1:
                raise ArtifactError(f"layer {name!r} is shared or unconnected; the NumPy runtime cannot run it")
            refs = _inbound(nodes[0])
            args = [values[(r[0], r[2])] for r in refs]
            values[(name, 0)] = layer(*args)
        return {n: values[(n, 0)] for n in self.output_names}


def _collect_vars(group: Any) -> list[np.ndarray]:
    """Variables of one layer group: ``vars/0..n`` (plus nested cells / forward / backward layers)."""
    out: list[np.ndarray] = []
    if "vars" in group:
        v = group["vars"]
        out.extend(np.asarray(v[str(i)], dtype=np.float32) for i in range(len(v)))
    for sub in ("cell", "forward_layer", "backward_layer"):
        if sub in group:
            out.extend(_collect_vars(group[sub]))
    return out
