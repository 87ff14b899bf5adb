"""The tempo model: dilated 1-D convolutions over the log-BPM axis of the tempo evidence.

Input ``(batch, N_BINS, N_CHANNELS)`` (:func:`mgr.tempo.features.evidence`), output ``tempo``
``(batch, N_BINS)`` softmax over the same grid. Convolutions along the log-BPM axis are
equivariant to a tempo scaling (a factor is a shift), so what the model learns at 90 BPM holds
at 140 BPM; dilations of 12, 21 and 36 bins let each tempo candidate see its x4/3, x3/2 and x2
relatives, which is the octave decision (a DSP estimator takes the largest peak after a fixed
prior instead). The position channel lets it learn a tempo prior. :func:`average` makes one model of several trained from different seeds. Keras layers
only; TensorFlow is imported when a model is built.
"""

from __future__ import annotations

from typing import Any

from mgr.tempo.features import N_BINS, N_CHANNELS


def build(width: int = 32, dropout: float = 0.1, seed: int = 0, name: str = "tempo_estimator") -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(int(seed))
    inp = keras.Input((N_BINS, N_CHANNELS), name="input")
    x1 = layers.Conv1D(width, 5, padding="same", activation="relu", name="local")(inp)
    x2 = layers.Conv1D(width, 3, dilation_rate=12, padding="same", activation="relu", name="third")(x1)
    h = layers.Concatenate(name="c1")([x1, x2])
    x3 = layers.Conv1D(width, 3, dilation_rate=36, padding="same", activation="relu", name="octave")(h)
    x4 = layers.Conv1D(width, 3, dilation_rate=21, padding="same", activation="relu", name="fifth")(x3)
    x5 = layers.Conv1D(width, 3, dilation_rate=36, padding="same", activation="relu", name="octave2")(
        layers.Concatenate(name="c2")([x3, x4]))
    h = layers.Concatenate(name="c3")([x1, x2, x3, x4, x5])
    h = layers.Conv1D(width, 1, activation="relu", name="mix")(h)
    h = layers.Dropout(dropout, name="drop")(h)
    logits = layers.Flatten(name="flat")(layers.Conv1D(1, 1, name="logit")(h))
    out = layers.Softmax(name="tempo")(logits)
    return keras.Model(inp, out, name=name)


def average(members: list[Any]) -> Any:
    """One model whose ``tempo`` output is the mean of ``members``' posteriors (an ensemble of the
    same architecture trained from different seeds; one member is returned as it is). Where the
    evidence is ambiguous (a tempo against its double) single members disagree from seed to seed;
    their mean is a steadier octave decision."""
    if len(members) == 1:
        return members[0]
    import keras
    from keras import layers

    inp = keras.Input((N_BINS, N_CHANNELS), name="input")
    out = layers.Average(name="tempo")([m(inp) for m in members])
    return keras.Model(inp, out, name="tempo_ensemble")
