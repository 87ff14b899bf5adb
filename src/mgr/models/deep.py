"""The deep-model registry (Keras 3, ``keras.layers`` / ``keras.ops`` only) and the deep artifact.

Every builder takes an input of shape ``(n_mels, frames, 1)`` (a log-mel window) and returns a
functional :class:`keras.Model` whose outputs are a dict keyed by name:

- ``genre``: softmax over the genre vocabulary (always),
- ``tempo``: softmax over tempo classes (``tempo_genre`` only, when ``n_tempo_classes > 0``),
- ``tags``: sigmoid multi-label head (any model, when ``n_tags > 0``).

Normalisation lives *inside* the model: when ``mean``/``std`` are given, the first layer is a
``keras.layers.Normalization`` with those fixed per-mel-band values (the store's train
statistics), so a saved model takes raw log-mel windows and ``predict`` needs no extra step.

No Lambda layers, no ``tf.*``: every model saves as ``.keras`` and loads with ``safe_mode=True``
under any Keras backend. ``params.width`` multiplies every filter/unit count (tiny for tests).

Artifacts (:func:`write_artifact`): ``model.keras`` (inspection, retraining: :func:`load_keras`)
and ``model.onnx`` (:func:`mgr.models.export.export_keras`), which is what evaluate and
``mgr predict`` run (:func:`load` -> :class:`DeepArtifact`, onnxruntime, no Keras import).
Recurrent layers are built with ``unroll=True`` (the sequences are short and of fixed length):
the exported graph is then plain matrix ops; a ``While``-loop RNN is not accepted by onnxruntime
after conversion.

Architectures (after the seeds and papers in ``docs/REFERENCES.md``):

=================  ===========================================================================
``cnn2d``          gtzan.keras: 5 x [Conv 3x3 (16..256) + ReLU + MaxPool 2x2 + Dropout], Dense 512
``pons_blackbox``  Pons et al. 2016: one 12x8 conv (15 filters), MaxPool 4x1, Dense 200
``pons_time``      Pons et al. 2016: 1xn temporal filters, max-pool over all bands
``pons_freq``      Pons et al. 2016: mx1 frequency filters, max-pool over all frames
``pons_timefreq``  both Pons branches concatenated, Dense 200
``crnn``           Choi et al. 2016: 4 x [Conv 3x3 + BN + ELU + MaxPool], then 2 GRU layers (32)
``crnn_lstm``      3 x [Conv1D 64 k3 + BN + ReLU + MaxPool1D 2 + Dropout], LSTM 64, Dense 64
``cnn_bigru``      FMA seed's parallel CNN-RNN: 5 x Conv (3x1) branch || Bi-GRU(32) branch, Dense 128
``tempo_genre``    joint net: stem Conv 3x3, a horizontal (temporal, dilated 1xk) branch and a
                   vertical (frequency kx1) branch, heads ``genre`` and ``tempo``
``musicnn_transfer`` pretrained musicnn (Pons & Serra 2019, MSD or MTT weights) up to its 200-d
                   penultimate layer, frozen (``finetune_epochs`` unfreeze it), then our heads;
                   takes 187-frame windows of musicnn's own front end (store preset ``musicnn``)
=================  ===========================================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgr.cards import read_card
from mgr.errors import ArtifactError
from mgr.evaluation.calibration import apply_temperature
from mgr.inference import ONNX_FILE
from mgr.inference.runtime import OnnxModel
from mgr.io import file_hash, rezip, write_json
from mgr.models.export import export_keras
from mgr.params import DlModelParams
from mgr.pretrained import musicnn, transfer

OUTPUTS = ("genre", "tempo", "tags")
MODEL_FILE = "model.keras"
CARD_FILE = "model.json"


# ------------------------------------------------------------------------------ tempo bins
def tempo_bins(kind: str, min_bpm: float, max_bpm: float, n_log_bins: int = 64) -> dict[str, list[float]]:
    """Tempo class edges and centres in BPM.

    ``"10bpm"``: bins of 10 BPM from ``min_bpm`` (the last bin may be shorter), centres in the
    middle. ``"log"``: ``n_log_bins`` log-spaced bins, centres the geometric mean of the edges.
    """
    if not min_bpm < max_bpm:
        raise ValueError("min_bpm must be below max_bpm")
    if kind == "10bpm":
        edges = list(np.arange(min_bpm, max_bpm, 10.0)) + [max_bpm]
        edges = [float(e) for e in edges]
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    elif kind == "log":
        e = np.geomspace(min_bpm, max_bpm, n_log_bins + 1)
        edges = [float(x) for x in e]
        centres = [float(math.sqrt(a * b)) for a, b in zip(e[:-1], e[1:])]
    else:
        raise ValueError(f"unknown tempo bin kind {kind!r}")
    return {"kind": kind, "edges": edges, "centres": centres}


def bpm_to_class(bpm: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Class index of each BPM value (values outside the range clip to the end bins; NaN -> -1)."""
    bpm = np.asarray(bpm, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.clip(np.searchsorted(edges, bpm, side="right") - 1, 0, len(edges) - 2)
    return np.where(np.isfinite(bpm), idx, -1).astype(np.int64)


def bpm_from_probs(probs: np.ndarray, centres: list[float] | np.ndarray, *, log: bool = False) -> np.ndarray:
    """BPM read-out: the probability-weighted bin centre (in log-BPM for log-spaced bins)."""
    p = np.asarray(probs, dtype=np.float64)
    c = np.asarray(centres, dtype=np.float64)
    p = p / np.clip(p.sum(axis=-1, keepdims=True), 1e-12, None)
    if log:
        return np.exp(p @ np.log(c))
    return p @ c


# ------------------------------------------------------------------------------- builders
def _n(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def _pool(shape: tuple[int, ...], want: tuple[int, int]) -> tuple[int, int]:
    """Pool sizes that never shrink an axis below 1 (tiny test inputs stay valid)."""
    return (max(1, min(want[0], int(shape[1]))), max(1, min(want[1], int(shape[2]))))


def _kernel(shape: tuple[int, ...], want: tuple[int, int]) -> tuple[int, int]:
    return (max(1, min(want[0], int(shape[1]))), max(1, min(want[1], int(shape[2]))))


def _conv_block(x, filters: int, kernel, pool, *, bn: bool, act: str, dropout: float, name: str):
    import keras

    x = keras.layers.Conv2D(filters, _kernel(x.shape, kernel), padding="same", name=f"{name}_conv")(x)
    if bn:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.Activation(act, name=f"{name}_{act}")(x)
    p = _pool(x.shape, pool)
    if p != (1, 1):
        x = keras.layers.MaxPooling2D(p, name=f"{name}_pool")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def _cnn2d(x, p):
    import keras

    for i, f in enumerate((16, 32, 64, 128, 256)):
        x = _conv_block(x, _n(f, p.width), (3, 3), (2, 2), bn=False, act="relu", dropout=0.25 * (p.dropout > 0), name=f"b{i + 1}")
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(p.dropout, name="drop")(x)
    return keras.layers.Dense(_n(512, p.width), activation="relu", name="dense")(x)


def _pons_time_branch(x, p, name="time"):
    import keras

    k = _kernel(x.shape, (1, 60))
    x = keras.layers.Conv2D(_n(15, p.width), k, padding="same", activation="relu", name=f"{name}_conv")(x)
    x = keras.layers.MaxPooling2D((int(x.shape[1]), 1), name=f"{name}_pool")(x)  # over all bands
    return keras.layers.Flatten(name=f"{name}_flat")(x)


def _pons_freq_branch(x, p, name="freq"):
    import keras

    k = _kernel(x.shape, (32, 1))
    x = keras.layers.Conv2D(_n(15, p.width), k, padding="same", activation="relu", name=f"{name}_conv")(x)
    x = keras.layers.MaxPooling2D((1, int(x.shape[2])), name=f"{name}_pool")(x)  # over all frames
    return keras.layers.Flatten(name=f"{name}_flat")(x)


def _pons_blackbox(x, p):
    import keras

    x = keras.layers.Conv2D(_n(15, p.width), _kernel(x.shape, (12, 8)), activation="relu", name="conv")(x)
    x = keras.layers.MaxPooling2D(_pool(x.shape, (4, 1)), name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dropout(p.dropout, name="drop")(x)
    return keras.layers.Dense(_n(200, p.width), activation="relu", name="dense")(x)


def _pons_time(x, p):
    import keras

    return keras.layers.Dropout(p.dropout, name="drop")(_pons_time_branch(x, p))


def _pons_freq(x, p):
    import keras

    return keras.layers.Dropout(p.dropout, name="drop")(_pons_freq_branch(x, p))


def _pons_timefreq(x, p):
    import keras

    h = keras.layers.Concatenate(name="concat")([_pons_time_branch(x, p), _pons_freq_branch(x, p)])
    h = keras.layers.Dropout(p.dropout, name="drop")(h)
    return keras.layers.Dense(_n(200, p.width), activation="relu", name="dense")(h)


def _to_sequence(x, name: str):
    """(batch, bands, frames, ch) -> (batch, frames, bands*ch) for the recurrent layers."""
    import keras

    b, t, c = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    x = keras.layers.Permute((2, 1, 3), name=f"{name}_permute")(x)
    return keras.layers.Reshape((t, b * c), name=f"{name}_reshape")(x)


def _crnn(x, p):
    import keras

    pools = ((2, 2), (3, 3), (4, 4), (4, 4))
    for i, (f, pool) in enumerate(zip((64, 128, 128, 128), pools)):
        x = _conv_block(x, _n(f, p.width), (3, 3), pool, bn=True, act="elu", dropout=0.1, name=f"b{i + 1}")
    x = _to_sequence(x, "seq")
    x = keras.layers.GRU(_n(32, p.width), return_sequences=True, unroll=True, name="gru1")(x)
    x = keras.layers.GRU(_n(32, p.width), unroll=True, name="gru2")(x)
    return keras.layers.Dropout(p.dropout, name="drop")(x)


def _crnn_lstm(x, p):
    import keras

    x = _to_sequence(x, "seq")  # (frames, bands): 1D convs over time, bands as channels
    for i in range(3):
        x = keras.layers.Conv1D(_n(64, p.width), 3, padding="same", name=f"b{i + 1}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"b{i + 1}_bn")(x)
        x = keras.layers.Activation("relu", name=f"b{i + 1}_relu")(x)
        if int(x.shape[1]) >= 2:
            x = keras.layers.MaxPooling1D(2, name=f"b{i + 1}_pool")(x)
        x = keras.layers.Dropout(0.1, name=f"b{i + 1}_drop")(x)
    x = keras.layers.LSTM(_n(64, p.width), unroll=True, name="lstm")(x)
    x = keras.layers.Dropout(p.dropout, name="drop")(x)
    return keras.layers.Dense(_n(64, p.width), activation="relu", name="dense")(x)


def _cnn_bigru(x, p):
    import keras

    c = x
    for i, f in enumerate((16, 32, 64, 128, 64)):
        c = _conv_block(c, _n(f, p.width), (3, 1), (2, 2), bn=False, act="relu", dropout=0.0, name=f"cnn{i + 1}")
    c = keras.layers.Flatten(name="cnn_flat")(c)
    r = keras.layers.MaxPooling2D(_pool(x.shape, (2, 1)), name="rnn_pool")(x)  # halve the bands
    r = _to_sequence(r, "rnn")
    r = keras.layers.Bidirectional(keras.layers.GRU(_n(32, p.width), unroll=True), name="bigru")(r)
    h = keras.layers.Concatenate(name="concat")([c, r])
    h = keras.layers.Dense(_n(128, p.width), activation="relu", name="dense")(h)
    return keras.layers.Dropout(p.dropout, name="drop")(h)


def _tempo_genre(x, p):
    """Stem, then a horizontal branch (temporal 1xk filters, dilated, pooled over time so the
    features do not depend on the window's phase: what tempo needs) parallel to a vertical
    branch (kx1 frequency filters: timbre), concatenated for both heads."""
    import keras

    s = _conv_block(x, _n(16, p.width), (3, 3), (1, 1), bn=True, act="relu", dropout=0.0, name="stem")
    # horizontal (time) branch: average the bands down, then a dilated temporal stack
    h = keras.layers.AveragePooling2D(_pool(s.shape, (8, 1)), name="h_bandpool")(s)
    for i, d in enumerate((1, 2, 4, 8)):
        k = _kernel(h.shape, (1, 9))
        h = keras.layers.Conv2D(
            _n(32, p.width), k, dilation_rate=(1, d), padding="same", name=f"h{i + 1}_conv"
        )(h)
        h = keras.layers.BatchNormalization(name=f"h{i + 1}_bn")(h)
        h = keras.layers.Activation("relu", name=f"h{i + 1}_relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="h_gap")(h)
    # vertical (frequency) branch, at half resolution (timbre needs no frame precision)
    v = keras.layers.MaxPooling2D(_pool(s.shape, (2, 2)), name="v_inpool")(s)
    for i, f in enumerate((32, 64)):
        v = _conv_block(v, _n(f, p.width), (8, 1), (2, 2), bn=True, act="relu", dropout=0.0, name=f"v{i + 1}")
    v = keras.layers.GlobalAveragePooling2D(name="v_gap")(v)
    z = keras.layers.Concatenate(name="concat")([h, v])
    return keras.layers.Dropout(p.dropout, name="drop")(z)


def _musicnn_transfer(x, p):
    # the pretrained musicnn backbone (Pons & Serra 2019; weights from the musicnn wheel), frozen,
    # up to its 200-d penultimate layer; train-dl unfreezes it for `finetune_epochs`
    return transfer.transfer_body(x, getattr(p, "backbone", "msd"), dropout=p.dropout)


REGISTRY: dict[str, Callable[[Any, Any], Any]] = {
    "cnn2d": _cnn2d,
    "pons_blackbox": _pons_blackbox,
    "pons_time": _pons_time,
    "pons_freq": _pons_freq,
    "pons_timefreq": _pons_timefreq,
    "crnn": _crnn,
    "crnn_lstm": _crnn_lstm,
    "cnn_bigru": _cnn_bigru,
    "tempo_genre": _tempo_genre,
    "musicnn_transfer": _musicnn_transfer,
}
TEMPO_MODELS = ("tempo_genre",)  # models that get a tempo head when the data has tempo
# pretrained models -> the front-end preset of the store they train on (fixed by their weights);
# their windows are that many frames, and they take the front end's raw values (no Normalization)
PRETRAINED = {"musicnn_transfer": "musicnn"}
PRETRAINED_WINDOW_FRAMES = {"musicnn_transfer": musicnn.PATCH_FRAMES}


def build(
    name: str,
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    n_tempo_classes: int = 0,
    n_tags: int = 0,
    params: Any = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
):
    """Build registry model ``name`` (uncompiled) with outputs ``genre`` (+ ``tempo``, ``tags``).

    ``mean``/``std`` (per mel band, length ``input_shape[0]``) add a fixed Normalization layer.
    ``n_tempo_classes`` is honoured by every model (only ``tempo_genre`` gets one by default in
    training); ``n_tags`` adds the sigmoid tags head.
    """
    import keras

    if name not in REGISTRY:
        raise KeyError(f"unknown deep model {name!r} (known: {', '.join(REGISTRY)})")
    if params is None:
        params = DlModelParams()
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    inp = keras.Input(shape=tuple(int(s) for s in input_shape), name="logmel")
    x = inp
    if mean is not None and name not in PRETRAINED:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std if std is not None else np.ones_like(mean), dtype=np.float32).reshape(-1)
        if mean.shape[0] != input_shape[0] or std.shape[0] != input_shape[0]:
            raise ValueError("mean/std must have one value per mel band")
        var = np.maximum(std, 1e-3) ** 2
        x = keras.layers.Normalization(axis=1, mean=mean.tolist(), variance=var.tolist(), name="norm")(x)
    z = REGISTRY[name](x, params)
    outputs = {"genre": keras.layers.Dense(n_classes, activation="softmax", name="genre")(z)}
    if n_tempo_classes > 0:
        t = keras.layers.Dense(_n(64, params.width), activation="relu", name="tempo_dense")(z)
        outputs["tempo"] = keras.layers.Dense(n_tempo_classes, activation="softmax", name="tempo")(t)
    if n_tags > 0:
        outputs["tags"] = keras.layers.Dense(n_tags, activation="sigmoid", name="tags")(z)
    return keras.Model(inp, outputs, name=name)


def compile_model(model, learning_rate: float, outputs: list[str] | tuple[str, ...], *, jit_compile: Any = False) -> None:
    """Adam, categorical cross-entropy for genre/tempo (one-hot, so mixup works), BCE for tags.

    XLA is off by default: on CPU it cost ~20 s of compilation per run and no faster steps
    (benchmarks/train_dl.py --jit on|off)."""
    import keras

    losses = {"genre": "categorical_crossentropy", "tempo": "categorical_crossentropy", "tags": "binary_crossentropy"}
    metrics = {"genre": ["accuracy"], "tempo": ["accuracy"], "tags": [keras.metrics.AUC(name="auc", multi_label=True)]}
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss={o: losses[o] for o in outputs},
        metrics={o: metrics[o] for o in outputs},
        jit_compile=jit_compile,
    )


# ------------------------------------------------------------------------------- artifact
def _sample_windows(card: dict, input_shape: tuple[int, ...], n: int = 4) -> np.ndarray:
    """A few deterministic raw log-mel-like windows for the export parity check (the card's
    normalisation mean/std per band when present)."""
    rng = np.random.default_rng(0)
    norm = card.get("normalisation") or {}
    shape = tuple(int(s) for s in input_shape)
    X = rng.standard_normal((n, *shape)).astype(np.float32)
    mean, std = norm.get("mean"), norm.get("std")
    if mean is not None and std is not None and len(mean) == shape[0]:
        bshape = (1, shape[0]) + (1,) * (len(shape) - 1)
        X = X * np.asarray(std, np.float32).reshape(bshape) + np.asarray(mean, np.float32).reshape(bshape)
    return X


def _undated(name: str, data: bytes) -> tuple[str, bytes]:
    """A ``.keras`` archive's entry without what changes from run to run: ``metadata.json``'s
    ``date_saved``, and ``config.json``'s ``shared_object_id`` values (Python ``id()``s, which
    only tie shared objects together: renumbered in order of first appearance)."""
    if name == "metadata.json":
        meta = json.loads(data)
        if "date_saved" in meta:
            meta["date_saved"] = "1980-01-01@00:00:00"
        data = json.dumps(meta).encode()
    elif name == "config.json":
        ids: dict[int, int] = {}

        def walk(o: Any) -> Any:
            if isinstance(o, dict):
                return {k: ids.setdefault(v, len(ids) + 1) if k == "shared_object_id" and isinstance(v, int) else walk(v)
                        for k, v in o.items()}
            return [walk(v) for v in o] if isinstance(o, list) else o

        data = json.dumps(walk(json.loads(data))).encode()
    return name, data


def write_artifact(model, card: dict, model_dir: str | Path) -> dict:
    """Write ``model.keras`` (kept for inspection and retraining), ``model.onnx`` (what evaluate
    and predict run; checked against Keras on sample windows within 1e-4) and ``model.json`` into
    the existing directory ``model_dir``. The card gets ``model_file``, ``model_sha256``,
    ``onnx_file`` and ``onnx_sha256``. Returns the card as written."""
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    model.save(d / MODEL_FILE)
    rezip(d / MODEL_FILE, _undated)  # the same model, the same bytes (Keras stamps the save time)
    export_keras(model, d / ONNX_FILE, sample=_sample_windows(card, tuple(model.input_shape[1:])))
    card = {**card, "model_file": MODEL_FILE, "model_sha256": file_hash(d / MODEL_FILE),
            "onnx_file": ONNX_FILE, "onnx_sha256": file_hash(d / ONNX_FILE)}
    write_json(d / CARD_FILE, card)
    return card


@dataclass
class DeepArtifact:
    """A deep model's card plus its ONNX session (:class:`mgr.inference.runtime.OnnxModel`).

    ``predict_windows`` takes raw log-mel windows; it is what evaluate scores and what
    ``mgr predict`` runs. Loading reads no Keras code."""

    name: str
    model: Any  # mgr.inference.runtime.OnnxModel
    card: dict
    labels: list[str]
    frontend: dict
    window_frames: int
    outputs: list[str]
    tempo_centres: list[float] = field(default_factory=list)
    tag_vocab: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.card["input_shape"])

    @property
    def n_mels(self) -> int:
        return self.input_shape[0]

    @property
    def temperature(self) -> float:
        """The card's ``calibration.temperature`` (1.0 without one)."""
        return float((self.card.get("calibration") or {}).get("temperature", 1.0))

    def calibrate(self, genre_probs: np.ndarray) -> np.ndarray:
        """Raw genre probabilities (``predict_windows(calibrated=False)``) -> the calibrated ones
        that ``predict_windows`` returns (float32)."""
        t = self.temperature
        p = np.asarray(genre_probs)
        return apply_temperature(p, t).astype(np.float32) if t != 1.0 else p.astype(np.float32, copy=False)

    def predict_windows(self, X: np.ndarray, batch_size: int = 64, calibrated: bool = True) -> dict[str, np.ndarray]:
        """``X[n, n_mels, window_frames]`` (raw log-mel, as in the store) -> ``{output: array}``.

        Keys: ``genre`` (n, n_labels; tempered by the card's ``calibration.temperature`` when it has
        one, unless ``calibrated=False``: the network's raw softmax) and, where the model has them, ``tempo`` (n, n_tempo
        classes), ``tempo_bpm`` (n,) (probability-weighted bin centre) and ``tags`` (n, n_tags).
        Non-finite model outputs raise :class:`mgr.inference.runtime.InferenceError`.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 4 and X.shape[-1] == 1:
            X = X[..., 0]
        if X.ndim != 3 or X.shape[1:] != (self.n_mels, self.window_frames):
            raise ArtifactError(
                f"model {self.name}: windows must be (n, {self.n_mels}, {self.window_frames}), got {tuple(X.shape)}"
            )
        if len(X) == 0:
            out = {"genre": np.zeros((0, len(self.labels)), np.float32)}
        else:
            self.model.batch_size = max(1, int(batch_size))
            out = self.model.run(X.reshape(len(X), *self.input_shape))
            if calibrated:  # the card's temperature, fitted on validation tracks at train time
                out["genre"] = self.calibrate(out["genre"])
        if "tempo" in out and self.tempo_centres:
            bins = self.card.get("tempo_bins") or {}
            out["tempo_bpm"] = bpm_from_probs(out["tempo"], self.tempo_centres, log=bins.get("kind") == "log")
        return out


def _check_file_hash(path: Path, expected: str | None) -> None:
    if expected and file_hash(path) != str(expected).removeprefix("sha256:"):
        raise ArtifactError(f"{path} does not match the sha256 in its model card (modified or corrupt); refusing to load it")


def load(model_dir: str | Path, *, threads: int | None = None) -> DeepArtifact:
    """Open ``model_dir`` for inference: the card, then ``model.onnx`` (sha256 checked against the
    card's ``onnx_sha256`` before onnxruntime reads it) in an onnxruntime session; its outputs,
    input shape and genre classes are checked against the card. ``model.keras`` is not read
    (only its hash is checked when present). Imports neither TensorFlow nor Keras."""
    model_dir = Path(model_dir)
    card_path = model_dir / CARD_FILE
    card = read_card(model_dir, kind="deep")
    for key in ("name", "labels", "frontend", "window_frames", "outputs"):
        if key not in card:
            raise ArtifactError(f"{card_path}: missing {key!r}")
    if not card.get("onnx_file") or not card.get("onnx_sha256"):
        raise ArtifactError(f"{model_dir}: the card names no ONNX model (onnx_file/onnx_sha256); retrain the model")
    if card["onnx_file"] != ONNX_FILE:
        raise ArtifactError(f"{card_path}: onnx_file must be {ONNX_FILE!r}, got {card['onnx_file']!r}")
    native = model_dir / str(card.get("model_file") or MODEL_FILE)
    if native.name == MODEL_FILE and native.is_file():  # the artifact as a whole must be intact
        _check_file_hash(native, card.get("model_sha256"))
    model = OnnxModel(model_dir / ONNX_FILE, sha256=card["onnx_sha256"], threads=threads)
    path = model.path
    labels = list(card["labels"])
    names = model.output_names
    if sorted(names) != sorted(card["outputs"]):
        raise ArtifactError(f"{path}: outputs {names} do not match the card's {card['outputs']}")
    shape = model.input_shape[1:]
    want = tuple(int(d) for d in card.get("input_shape") or (shape[0] if shape else 0, card["window_frames"], 1))
    if shape != want or want[1] != int(card["window_frames"]):
        raise ArtifactError(
            f"{path}: input shape {shape} does not match the card ({want}, {card['window_frames']} frames)"
        )
    card = {**card, "input_shape": list(want)}
    genre_units = model.output_shape("genre")[-1]
    if genre_units != len(labels):
        raise ArtifactError(f"{path}: genre head has {genre_units} classes but the card lists {len(labels)} labels")
    tb = card.get("tempo_bins") or {}
    return DeepArtifact(
        name=str(card["name"]),
        model=model,
        card=card,
        labels=labels,
        frontend=dict(card["frontend"]),
        window_frames=int(card["window_frames"]),
        outputs=list(card["outputs"]),
        tempo_centres=list(tb.get("centres", [])),
        tag_vocab=list(card.get("tag_vocab", [])),
    )


def load_keras(model_dir: str | Path):
    """The Keras model of ``model_dir`` (``model.keras``, hash-checked, ``safe_mode=True``), for
    inspection or further training; evaluate and predict never use it."""
    model_dir = Path(model_dir)
    card = read_card(model_dir, kind="deep")
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: {MODEL_FILE} is missing")
    _check_file_hash(path, card.get("model_sha256"))
    import keras

    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # corrupt zip, foreign file, unsafe content
        raise ArtifactError(f"{path}: cannot be loaded safely ({type(e).__name__}: {e})") from None
