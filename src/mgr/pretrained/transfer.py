"""Transfer learning on the musicnn backbone: the frozen body our heads sit on
(``musicnn_transfer`` in :mod:`mgr.models.deep`), a complete transfer model, and unfreezing for
fine-tuning. Keras is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from mgr.pretrained import musicnn

BACKBONE_LAYER = "musicnn"


def build_transfer(
    backbone: str,
    n_classes: int,
    *,
    n_tags: int = 0,
    n_tempo_classes: int = 0,
    dropout: float = 0.3,
    input_layout: str = "mels_frames",
    trainable_backbone: bool = False,
    weights: bool = True,
) -> Any:
    """A genre classifier (+ tags, tempo heads) on the pretrained musicnn penultimate layer.

    Input: ``input_layout="mels_frames"`` takes the store's window layout ``(96, 187, 1)``
    (turned into (187, 96) by ``Reshape`` + ``Permute``); ``"frames_mels"`` takes ``(187, 96)``.
    The windows must hold musicnn's front end (:data:`FRONTEND`: 16 kHz, 96 Slaney mels,
    ``log10(1 + 10000 x)``, not dB) and need no normalisation layer (the backbone starts with
    its own BatchNormalization).

    The backbone is the nested model ``model.get_layer("musicnn")`` (input (187, 96), output
    the 200-d penultimate layer, no dropout inside). It is frozen unless ``trainable_backbone``;
    change it later with :func:`set_backbone_trainable` (then recompile). Frozen
    BatchNormalization layers run in inference mode in Keras 3 (pretrained statistics kept),
    which is why :func:`set_backbone_trainable` keeps them frozen by default when unfreezing.
    Head: ``Dropout(dropout)`` then ``Dense`` softmax ``genre`` (+ ``tempo`` softmax,
    + ``tags`` sigmoid). Outputs are a dict, like :mod:`mgr.models.deep`.
    """
    import keras

    L = keras.layers
    if n_classes < 2:
        raise ValueError(f"build_transfer: n_classes must be >= 2, got {n_classes}")
    if input_layout == "mels_frames":
        inp = keras.Input((musicnn.N_MELS, musicnn.PATCH_FRAMES, 1), name="input")
    elif input_layout == "frames_mels":
        inp = keras.Input((musicnn.PATCH_FRAMES, musicnn.N_MELS), name="input")
    else:
        raise ValueError(f"input_layout must be 'mels_frames' or 'frames_mels', got {input_layout!r}")
    z = transfer_body(inp, backbone, dropout=dropout, weights=weights)
    outputs = {"genre": L.Dense(n_classes, activation="softmax", name="genre")(z)}
    if n_tempo_classes:
        outputs["tempo"] = L.Dense(n_tempo_classes, activation="softmax", name="tempo")(z)
    if n_tags:
        outputs["tags"] = L.Dense(n_tags, activation="sigmoid", name="tags")(z)
    model = keras.Model(inp, outputs, name=f"transfer_{musicnn.ARTIFACT_NAMES[musicnn.canonical_name(backbone)]}")
    set_backbone_trainable(model, trainable_backbone)
    return model


def transfer_body(x: Any, backbone: str, *, dropout: float = 0.3, weights: bool = True) -> Any:
    """The shared part of every transfer model: ``x`` (a ``(96, 187, 1)`` window in the store's
    mels-by-frames layout, or ``(187, 96)``) -> the pretrained backbone (nested model
    ``"musicnn"``, frozen; see :func:`set_backbone_trainable`) -> its 200-d penultimate layer ->
    ``Dropout(dropout)``. Heads go on top (:func:`build_transfer`, ``mgr.models.deep``)."""
    import keras

    L = keras.layers
    if tuple(x.shape[1:]) == (musicnn.N_MELS, musicnn.PATCH_FRAMES, 1):
        x = L.Reshape((musicnn.N_MELS, musicnn.PATCH_FRAMES), name="squeeze_channel")(x)
        x = L.Permute((2, 1), name="to_frames_mels")(x)
    elif tuple(x.shape[1:]) != (musicnn.PATCH_FRAMES, musicnn.N_MELS):
        raise ValueError(f"musicnn takes ({musicnn.N_MELS}, {musicnn.PATCH_FRAMES}, 1) or ({musicnn.PATCH_FRAMES}, {musicnn.N_MELS}) windows, "
                         f"got {tuple(x.shape[1:])}")
    bb = musicnn.build_musicnn(musicnn.canonical_name(backbone), outputs="penultimate", weights=weights, model_name=BACKBONE_LAYER,
                       dropout=False)
    bb.trainable = False
    z = bb(x)
    return L.Dropout(dropout, name="head_dropout")(z)


def set_backbone_trainable(model: Any, trainable: bool, *, batchnorm: bool = False) -> Any:
    """Freeze (``trainable=False``) or unfreeze the nested ``musicnn`` backbone of ``model``.

    Unfreezing leaves its BatchNormalization layers frozen unless ``batchnorm=True`` (a frozen
    BN layer runs in inference mode, so fine-tuning keeps the pretrained statistics instead of
    re-estimating them from small batches). Recompile afterwards. Returns the backbone.
    """
    bb = model.get_layer(BACKBONE_LAYER)
    bb.trainable = bool(trainable)
    if trainable and not batchnorm:
        import keras

        for layer in bb.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return bb
