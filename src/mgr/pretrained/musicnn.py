"""musicnn (Pons & Serra 2019) rebuilt in Keras 3 from the checkpoints of the ``musicnn`` wheel.

The ``musicnn`` 0.1.0 wheel (ISC licence, Music Technology Group, Universitat Pompeu Fabra)
ships TF1 checkpoints of two audio taggers, ``MSD_musicnn`` (Million Song Dataset, 50 last.fm
tags) and ``MTT_musicnn`` (MagnaTagATune, 50 tags). We use the wheel **only for its data**: its
code needs TF1-style graph mode and pins old libraries, so nothing here imports it; the
checkpoint directory is located with :func:`importlib.util.find_spec`, which runs no code.

Front end (NumPy, float32; :func:`logmel`, :func:`patches`)
    musicnn's ``extractor.batch_data``: ``librosa.load(sr=16000)``, then
    ``librosa.feature.melspectrogram(y, sr=16000, hop_length=256, n_fft=512, n_mels=96).T``
    (power 2, periodic Hann, centred frames with reflect padding -- the ``pad_mode`` of the
    librosa musicnn was trained with; librosa 0.11 would pad with zeros --
    Slaney mel scale and ``norm="slaney"``, 0..8 kHz), then ``log10(1 + 10000 x)``; patches of
    187 frames (3 s), hop 187 (``input_overlap=False``). Here the STFT and filterbank are
    :mod:`mgr.dsp.frontend`'s (the project's one front end, tested equal to librosa), so no librosa at run time; resampling to
    16 kHz is the caller's (``mgr.audio.decode.load_audio(path, sr=16000)``). Two bugs of musicnn's
    own extractor are deliberately **not** reproduced:

    * it casts the mel power to float16 before the compression, which overflows to ``inf`` on
      loud bins (``10000 x`` > 65504), so real clips collapse to nearly the same output; we
      stay in float32 throughout;
    * its ``penultimate`` feature repeats the first batch's value for every later patch (a
      wrong variable in the batching loop); here every patch gets its own embedding.

    Clips shorter than one patch: musicnn's extractor fails on them (its batch is never
    defined); the models were trained with ``pad_short: repeat-pad`` (``config.json``), so
    :func:`patches` repeats the spectrogram in time until it fills 187 frames.

Model (:func:`build_musicnn`): ``models.build_musicnn`` layer by layer with standard Keras
layers only (no Lambda, no ``tf.*``), so it saves as ``.keras``, loads with ``safe_mode=True``
and exports to ONNX. Input ``(batch, 187, 96)`` (frames, mels) of :func:`logmel` values.

=====================  ==================================  ===========================================
TF1 (models.py)        checkpoint scope                     Keras layer(s)
=====================  ==================================  ===========================================
expand_dims + BN       batch_normalization                  ``expand`` Reshape, ``input_bn``
timbral 7x38 (0.4*96)  conv2d, batch_normalization_1        ``timbral_pad`` ZeroPadding2D (3, 3) time,
                                                            ``timbral_74_conv`` Conv2D 204 relu valid,
                                                            ``timbral_74_bn``, ``timbral_74_pool``
                                                            MaxPool (1, 59), ``timbral_74`` Reshape
timbral 7x67 (0.7*96)  conv2d_1, batch_normalization_2      ``timbral_77_*`` (204 filters, pool 1x30)
temporal 128x1 same    conv2d_2, batch_normalization_3      ``temporal_128_pad`` (63, 64),
                                                            ``temporal_128_conv`` Conv2D 51 relu,
                                                            ``_bn``, ``_pool`` (1, 96), Reshape
temporal 64x1 / 32x1   conv2d_3 / conv2d_4, bn_4 / bn_5     ``temporal_64_*`` (31, 32), ``temporal_32_*``
                                                            (15, 16) (TF "same" split the padding so)
front-end concat       --                                   ``frontend`` (187, 561)
mid-end conv 1         conv2d_5 (7x561), batch_norm_6       ``midend_pad1`` ZeroPadding1D 3,
                                                            ``midend_conv1`` Conv1D 64 relu, ``midend_bn1``
mid-end conv 2 + res   conv2d_6 (7x64), batch_norm_7        ``midend_conv2``, ``midend_bn2``, ``midend_res2`` Add
mid-end conv 3 + res   conv2d_7 (7x64), batch_norm_8        ``midend_conv3``, ``midend_bn3``, ``midend_res3`` Add
dense connection       --                                   ``midend`` Concatenate (187, 753)
temporal pooling       --                                   ``max_pool``, ``mean_pool`` (753 each),
                                                            interleaved [max_0, mean_0, max_1, ...]
                                                            like TF's concat-on-axis-2 + flatten
                                                            (``*_col`` Reshape, ``pool_pairs``, ``pool_flat``)
BN + dropout 0.5       batch_normalization_9 (1506)         ``pool_bn``, ``pool_dropout``
dense 200 relu + BN    dense, batch_normalization_10        ``dense``, ``penultimate`` (BN), ``penultimate_dropout``
dense 50 + sigmoid     dense_1                              ``logits``, ``taggram`` Activation sigmoid
=====================  ==================================  ===========================================

Every BatchNormalization is TF1 ``tf.compat.v1.layers.batch_normalization`` (epsilon 1e-3,
applied after the ReLU as in the original); Keras 3's ``BatchNormalization`` (epsilon 1e-3)
computes the same inference formula. Conv2D kernels of the mid-end (``[7, C, 1, 64]``) become
Conv1D kernels ``[7, C, 64]``. Outputs (a dict): ``taggram`` (50, sigmoid), ``penultimate``
(200), ``mean_pool`` and ``max_pool`` (753 each, the pooled mid-end). Agreement with the
original TF1 graph on the same checkpoint is tested (``tests/test_musicnn.py``).

Embeddings (:mod:`mgr.pretrained.embedding`), the transfer body (:mod:`mgr.pretrained.transfer`)
and the saved artifact (:func:`mgr.pretrained.builtin.save_backbone`) build on this module.

Credit: architecture, weights and tag vocabularies by Jordi Pons and Xavier Serra, "musicnn:
pre-trained convolutional neural networks for music audio tagging", ISMIR 2019 late-breaking
demo; ISC licence, Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgr.dsp.frontend import compute_spectrogram, musicnn_frontend
from mgr.io import file_hash

__all__ = [
    "ARTIFACT_NAMES",
    "BACKBONES",
    "CITATION",
    "FRONTEND",
    "MSD_LABELS",
    "MTT_LABELS",
    "OUTPUTS",
    "PATCH_FRAMES",
    "build_musicnn",
    "checkpoint_dir",
    "embedding_names",
    "logmel",
    "package_dir",
    "patches",
    "tag_vocab",
]

BACKBONES = ("MSD_musicnn", "MTT_musicnn")
ARTIFACT_NAMES = {"MSD_musicnn": "musicnn_msd", "MTT_musicnn": "musicnn_mtt"}
SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
N_TAGS = 50
PENULTIMATE = 200
POOLED = 753  # 561 front-end + 3 x 64 mid-end channels
EMBEDDING_DIM = 2 * PENULTIMATE
OUTPUTS = ("taggram", "penultimate", "mean_pool", "max_pool")
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization default

# the frontend dict of mgr.dsp.frontend (what the musicnn store and the embeddings compute) plus the
# patching of the backbone's input
FRONTEND: dict[str, Any] = {
    **musicnn_frontend(),
    "layout": "frames_mels",
    "patch_frames": PATCH_FRAMES,
    "patch_hop": PATCH_FRAMES,
    "pad_short": "repeat",
}

CITATION = {
    "text": (
        "Jordi Pons and Xavier Serra. musicnn: pre-trained convolutional neural networks for music "
        "audio tagging. Late-breaking/demo session, 20th International Society for Music Information "
        "Retrieval Conference (ISMIR), 2019."
    ),
    "bibtex": (
        "@inproceedings{pons2019musicnn,\n"
        "  title={musicnn: pre-trained convolutional neural networks for music audio tagging},\n"
        "  author={Pons, Jordi and Serra, Xavier},\n"
        "  booktitle={Late-breaking/demo session in 20th International Society for Music "
        "Information Retrieval Conference (LBD-ISMIR2019)},\n"
        "  year={2019}\n}"
    ),
    "url": "https://github.com/jordipons/musicnn",
}

# Tag vocabularies, copied as data from musicnn/configuration.py (musicnn 0.1.0, ISC licence,
# Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019; code by Jordi Pons).
# The order is the order of the taggram's 50 outputs.
MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip

# checkpoint files (the wheel names them with an empty basename: the prefix is "<dir>/")
CHECKPOINT_FILES = (".data-00000-of-00001", ".index", ".meta", "checkpoint", "config.json")


# ---------------------------------------------------------------------------------- names
def canonical_name(name: str) -> str:
    """``MSD_musicnn`` / ``MTT_musicnn`` from any spelling (``musicnn_msd``, ``msd`` too)."""
    for k, v in ARTIFACT_NAMES.items():
        if name in (k, v, k.lower(), k.split("_")[0].lower()):  # MSD_musicnn, musicnn_msd, msd
            return k
    raise ValueError(f"unknown musicnn backbone {name!r} (allowed: {', '.join(BACKBONES)}, "
                     f"{', '.join(ARTIFACT_NAMES.values())})")


def tag_vocab(name: str) -> list[str]:
    """The 50 tags of ``name``'s taggram, in output order."""
    return list(MSD_LABELS if canonical_name(name).startswith("MSD") else MTT_LABELS)


def embedding_names(name: str) -> list[str]:
    """Column names of :func:`mgr.pretrained.embedding.track_embedding`: ``musicnn_msd_mean_000 .. _199`` then ``_max_``."""
    art = ARTIFACT_NAMES[canonical_name(name)]
    return [f"{art}_{stat}_{i:03d}" for stat in ("mean", "max") for i in range(PENULTIMATE)]


# ------------------------------------------------------------------------------ the wheel
def package_dir() -> Path:
    """The installed ``musicnn`` package directory, located without importing it.

    From the distribution's metadata (immune to a ``musicnn.py`` elsewhere on ``sys.path``,
    such as ``benchmarks/musicnn.py``), else from :func:`importlib.util.find_spec`.
    """
    from importlib import metadata

    try:
        d = Path(str(metadata.distribution("musicnn").locate_file("musicnn")))
        if (d / "MSD_musicnn").is_dir():
            return d
    except metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the musicnn package (its checkpoints) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def checkpoint_dir(name: str) -> Path:
    """Directory of checkpoint ``name``; its TF checkpoint prefix is ``str(dir) + "/"``."""
    d = package_dir() / canonical_name(name)
    missing = [f for f in CHECKPOINT_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: checkpoint files missing: {', '.join(missing)}")
    return d


def _checkpoint_config(name: str) -> dict[str, Any]:
    return json.loads((checkpoint_dir(name) / "config.json").read_text())


def wheel_info() -> dict[str, str]:
    from importlib import metadata

    try:
        dist = metadata.distribution("musicnn")
    except metadata.PackageNotFoundError:
        return {"version": "unknown", "licence_text": ""}
    text = dist.read_text("LICENSE.md") or dist.read_text("LICENSE") or ""
    return {"version": dist.version, "licence_text": text.strip()}


# ------------------------------------------------------------------------------ front end
def logmel(y16k: np.ndarray, pad_mode: str = "reflect") -> np.ndarray:
    """musicnn's log-mel spectrogram of a mono 16 kHz signal: ``(n_frames, 96)`` float32.

    ``log10(1 + 10000 * melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96).T)``
    in float32 (not musicnn's float16), computed by the project's one front end
    (:func:`mgr.dsp.frontend.compute_spectrogram` with :func:`mgr.dsp.frontend.musicnn_frontend`).
    ``n_frames = 1 + len(y) // 256``. ``pad_mode`` pads the centred frames like librosa's
    argument: ``"reflect"`` (librosa < 0.10's default, the era musicnn was trained in; the
    default) or ``"constant"`` (zeros; librosa >= 0.10, what musicnn's extractor gets today);
    the two differ in the first and last frame only.
    """
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"logmel: pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
    y = np.ascontiguousarray(np.asarray(y16k, dtype=np.float32).reshape(-1))
    if y.size == 0:
        raise ValueError("logmel: empty signal")
    fe = dict(musicnn_frontend(), pad_mode=pad_mode)
    return np.ascontiguousarray(compute_spectrogram(y, SR, fe).T)


def patches(spec: np.ndarray, hop: int | None = None) -> np.ndarray:
    """Cut a ``(n_frames, 96)`` spectrogram into ``(n, 187, 96)`` float32 patches.

    Patches start at ``0, hop, 2 hop, ...`` (default ``hop = 187``: no overlap, musicnn's
    ``input_overlap=False``) while they fit; the tail shorter than a patch is dropped, as in
    musicnn. A spectrogram shorter than one patch is repeated in time until it fills one
    (the ``repeat-pad`` the models were trained with), giving one patch.
    """
    spec = np.asarray(spec, dtype=np.float32)
    if spec.ndim != 2 or spec.shape[1] != N_MELS or spec.shape[0] == 0:
        raise ValueError(f"patches: expected a (n_frames > 0, {N_MELS}) spectrogram, got {spec.shape}")
    hop = PATCH_FRAMES if hop is None else int(hop)
    if hop < 1:
        raise ValueError(f"patches: hop must be >= 1 frame, got {hop}")
    if spec.shape[0] < PATCH_FRAMES:
        reps = -(-PATCH_FRAMES // spec.shape[0])
        spec = np.tile(spec, (reps, 1))[:PATCH_FRAMES]
    view = np.lib.stride_tricks.sliding_window_view(spec, PATCH_FRAMES, axis=0)[::hop]  # (n, 96, 187)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


# ---------------------------------------------------------------------------------- model
# Keras layer -> (checkpoint scope, kind). Scopes are numbered by TF1 in creation order.
_WEIGHT_MAP: tuple[tuple[str, str, str], ...] = (
    ("input_bn", "batch_normalization", "bn"),
    ("timbral_74_conv", "conv2d", "conv2d"),
    ("timbral_74_bn", "batch_normalization_1", "bn"),
    ("timbral_77_conv", "conv2d_1", "conv2d"),
    ("timbral_77_bn", "batch_normalization_2", "bn"),
    ("temporal_128_conv", "conv2d_2", "conv2d"),
    ("temporal_128_bn", "batch_normalization_3", "bn"),
    ("temporal_64_conv", "conv2d_3", "conv2d"),
    ("temporal_64_bn", "batch_normalization_4", "bn"),
    ("temporal_32_conv", "conv2d_4", "conv2d"),
    ("temporal_32_bn", "batch_normalization_5", "bn"),
    ("midend_conv1", "conv2d_5", "conv1d"),
    ("midend_bn1", "batch_normalization_6", "bn"),
    ("midend_conv2", "conv2d_6", "conv1d"),
    ("midend_bn2", "batch_normalization_7", "bn"),
    ("midend_conv3", "conv2d_7", "conv1d"),
    ("midend_bn3", "batch_normalization_8", "bn"),
    ("pool_bn", "batch_normalization_9", "bn"),
    ("dense", "dense", "dense"),
    ("penultimate", "batch_normalization_10", "bn"),
    ("logits", "dense_1", "dense"),
)
_VAR_SUFFIXES = {
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),  # Keras BN weight order
    "conv2d": ("kernel", "bias"),
    "conv1d": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
}
# checkpoint entries that are optimiser state, not model weights
_OPTIMISER_VARS = ("beta1_power", "beta2_power")


def _musicnn_graph(keras: Any, num_filt_midend: int = 64, num_units_backend: int = 200, dropout: bool = True):
    """``(input, {tensor name: tensor})`` of ``models.build_musicnn`` (front end ``1.6``)."""
    L = keras.layers
    n_timbral, n_temporal = int(1.6 * 128), int(1.6 * 32)  # 204, 51
    inp = keras.Input((PATCH_FRAMES, N_MELS), name="input")
    x = L.Reshape((PATCH_FRAMES, N_MELS, 1), name="expand")(inp)
    x = L.BatchNormalization(epsilon=BN_EPSILON, name="input_bn")(x)

    # front end: timbral (vertical) filters; time padded by 3 on both sides, frequency 'valid'
    xp = L.ZeroPadding2D(((3, 3), (0, 0)), name="timbral_pad")(x)
    feats = []
    for key, frac in (("74", 0.4), ("77", 0.7)):
        h = int(frac * N_MELS)  # 38, 67
        c = L.Conv2D(n_timbral, (7, h), padding="valid", activation="relu", name=f"timbral_{key}_conv")(xp)
        c = L.BatchNormalization(epsilon=BN_EPSILON, name=f"timbral_{key}_bn")(c)
        c = L.MaxPooling2D((1, N_MELS - h + 1), name=f"timbral_{key}_pool")(c)
        feats.append(L.Reshape((PATCH_FRAMES, n_timbral), name=f"timbral_{key}")(c))
    # front end: temporal (horizontal) filters, TF 'same' padding in time made explicit
    for k in (128, 64, 32):
        before = (k - 1) // 2
        c = L.ZeroPadding2D(((before, k - 1 - before), (0, 0)), name=f"temporal_{k}_pad")(x)
        c = L.Conv2D(n_temporal, (k, 1), padding="valid", activation="relu", name=f"temporal_{k}_conv")(c)
        c = L.BatchNormalization(epsilon=BN_EPSILON, name=f"temporal_{k}_bn")(c)
        c = L.MaxPooling2D((1, N_MELS), name=f"temporal_{k}_pool")(c)
        feats.append(L.Reshape((PATCH_FRAMES, n_temporal), name=f"temporal_{k}")(c))
    front = L.Concatenate(axis=-1, name="frontend")(feats)  # (187, 561)

    # mid end: dense 1-D convolutions over time with residual connections
    def conv_bn(z, i):
        z = L.ZeroPadding1D(3, name=f"midend_pad{i}")(z)
        z = L.Conv1D(num_filt_midend, 7, padding="valid", activation="relu", name=f"midend_conv{i}")(z)
        return L.BatchNormalization(epsilon=BN_EPSILON, name=f"midend_bn{i}")(z)

    cnn1 = conv_bn(front, 1)
    cnn2 = L.Add(name="midend_res2")([conv_bn(cnn1, 2), cnn1])
    cnn3 = L.Add(name="midend_res3")([conv_bn(cnn2, 3), cnn2])
    mid = L.Concatenate(axis=-1, name="midend")([front, cnn1, cnn2, cnn3])  # (187, 753)

    # back end: temporal max and mean pooling, interleaved as TF's concat(axis=2) + flatten
    max_pool = L.GlobalMaxPooling1D(name="max_pool")(mid)
    mean_pool = L.GlobalAveragePooling1D(name="mean_pool")(mid)
    n_pool = mid.shape[-1]
    pairs = L.Concatenate(axis=-1, name="pool_pairs")(
        [L.Reshape((n_pool, 1), name="max_pool_col")(max_pool), L.Reshape((n_pool, 1), name="mean_pool_col")(mean_pool)]
    )
    z = L.Flatten(name="pool_flat")(pairs)  # (1506,) = [max_0, mean_0, max_1, mean_1, ...]
    z = L.BatchNormalization(epsilon=BN_EPSILON, name="pool_bn")(z)
    if dropout:
        z = L.Dropout(0.5, name="pool_dropout")(z)
    z = L.Dense(num_units_backend, activation="relu", name="dense")(z)
    pen = L.BatchNormalization(epsilon=BN_EPSILON, name="penultimate")(z)
    z = L.Dropout(0.5, name="penultimate_dropout")(pen) if dropout else pen
    logits = L.Dense(N_TAGS, name="logits")(z)
    taggram = L.Activation("sigmoid", name="taggram")(logits)
    tensors = {
        "taggram": taggram, "penultimate": pen, "mean_pool": mean_pool, "max_pool": max_pool,
        "logits": logits, "frontend": front, "midend": mid, "cnn1": cnn1, "cnn2": cnn2, "cnn3": cnn3,
    }  # fmt: skip
    return inp, tensors


def _load_checkpoint_weights(model: Any, name: str) -> dict[str, int]:
    """Assign every checkpoint weight to its Keras layer by the explicit :data:`_WEIGHT_MAP`.

    Fails (``ValueError``) when a checkpoint variable has no entry in the map, a shape differs,
    or a weight-bearing layer of ``model`` is left unassigned. Layers of the map that ``model``
    does not contain (e.g. ``logits`` in a backbone cut at the penultimate) are skipped.
    Returns ``{"assigned": n_variables, "skipped": n_variables}``.
    """
    import tensorflow as tf

    prefix = str(checkpoint_dir(name)) + "/"
    # tf.train.load_checkpoint(prefix) would treat the prefix as a directory and follow the
    # stale absolute path in its 'checkpoint' file; the reader takes the prefix directly.
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    shapes = reader.get_variable_to_shape_map()
    weights = {v for v in shapes if not v.endswith(("/Adam", "/Adam_1")) and v not in _OPTIMISER_VARS}
    mapped = {f"{scope}/{s}" for _, scope, kind in _WEIGHT_MAP for s in _VAR_SUFFIXES[kind]}
    if weights != mapped:
        raise ValueError(
            f"{prefix}: checkpoint variables and the weight map differ: unmapped {sorted(weights - mapped)}, "
            f"missing from the checkpoint {sorted(mapped - weights)}"
        )
    layers = {layer.name: layer for layer in model.layers}
    assigned = skipped = 0
    done: set[str] = set()
    for layer_name, scope, kind in _WEIGHT_MAP:
        names = [f"{scope}/{s}" for s in _VAR_SUFFIXES[kind]]
        if layer_name not in layers:
            skipped += len(names)
            continue
        layer = layers[layer_name]
        current = layer.get_weights()
        values = [reader.get_tensor(n) for n in names]
        if kind == "conv1d":  # TF conv2d [k, C, 1, out] over (time, C, 1) == Conv1D [k, C, out]
            k = values[0]
            if k.ndim != 4 or k.shape[2] != 1:
                raise ValueError(f"{scope}/kernel: expected [k, C, 1, out], got {list(k.shape)}")
            values[0] = k[:, :, 0, :]
        if len(current) != len(values):
            raise ValueError(f"layer {layer_name}: {len(current)} weights, checkpoint scope {scope} has {len(values)}")
        for cur, val, n in zip(current, values, names):
            if tuple(cur.shape) != tuple(val.shape):
                raise ValueError(f"layer {layer_name}: {n} has shape {list(val.shape)}, the layer wants {list(cur.shape)}")
        layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
        assigned += len(names)
        done.add(layer_name)
    left = [layer.name for layer in model.layers if layer.weights and layer.name not in done]
    if left:
        raise ValueError(f"layers without checkpoint weights: {left}")
    return {"assigned": assigned, "skipped": skipped}


def build_musicnn(
    name: str = "MSD_musicnn",
    *,
    outputs: str | Sequence[str] = OUTPUTS,
    weights: bool = True,
    model_name: str | None = None,
    dropout: bool = True,
) -> Any:
    """The musicnn tagger ``name`` (``"MSD_musicnn"`` or ``"MTT_musicnn"``) as a Keras model.

    Input ``(batch, 187, 96)`` float32 :func:`logmel` patches. ``outputs``: a sequence of names
    gives a dict output (default ``taggram, penultimate, mean_pool, max_pool``; also available:
    ``logits``, ``frontend`` (187, 561), ``midend`` (187, 753), ``cnn1``/``cnn2``/``cnn3``
    (187, 64)); a single string gives a plain tensor output (what :func:`build_transfer` nests).
    ``weights=True`` loads the checkpoint (every variable mapped explicitly, see the module
    docstring); ``False`` leaves Keras' initialisation. ``dropout=False`` leaves out the two
    ``Dropout(0.5)`` layers of the back end (inactive at inference anyway).
    """
    import keras

    name = canonical_name(name)
    cfg = _checkpoint_config(name)
    if (cfg.get("xInput"), cfg.get("yInput"), cfg.get("num_classes_dataset")) != (PATCH_FRAMES, N_MELS, N_TAGS):
        raise ValueError(f"{name}: unexpected config.json (xInput, yInput, classes) = "
                         f"{cfg.get('xInput'), cfg.get('yInput'), cfg.get('num_classes_dataset')}")
    # models.define_model: both checkpoints are build_musicnn(num_filt_midend=64, num_units_backend=200)
    inp, tensors = _musicnn_graph(keras, num_filt_midend=64, num_units_backend=PENULTIMATE, dropout=dropout)
    if isinstance(outputs, str):
        out: Any = tensors[outputs]
    else:
        unknown = [o for o in outputs if o not in tensors]
        if unknown or not outputs:
            raise ValueError(f"unknown outputs {unknown} (available: {sorted(tensors)})")
        out = {o: tensors[o] for o in outputs}
    model = keras.Model(inp, out, name=model_name or ARTIFACT_NAMES[name])
    if weights:
        _load_checkpoint_weights(model, name)
    return model


def provenance(name: str) -> dict[str, Any]:
    """Where backbone ``name``'s weights come from, for every card built on them: the wheel
    (package, version, sha256 of each checkpoint file), its ISC licence notice and the citation."""

    name = canonical_name(name)
    ck = checkpoint_dir(name)
    wheel = wheel_info()
    licence_text = wheel["licence_text"]
    copyright_line = next((ln.strip() for ln in licence_text.splitlines() if "Copyright" in ln), "")
    return {
        "backbone": name,
        "architecture": "musicnn (musically motivated CNN front end, dense residual 1-D CNN mid end, "
        "temporal max+mean pooling back end)",
        "source": {
            "package": "musicnn",
            "version": wheel["version"],
            "checkpoint": name,
            "files": {f: file_hash(ck / f) for f in CHECKPOINT_FILES},
        },
        "licence": {"spdx": "ISC", "copyright": copyright_line, "notice": licence_text},
        "citation": CITATION,
    }


