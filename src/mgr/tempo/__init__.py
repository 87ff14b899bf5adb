"""Tempo estimation (issue 14): a learned tempo estimator whose weights the project trains itself.

* :mod:`mgr.tempo.features`: onset envelopes (the full-band librosa dB flux, the loudness flux of
  4 mel-band groups, the linear-amplitude accents) and their tempo evidence on a log-BPM grid
  (autocorrelation and Fourier tempogram, per envelope);
* :mod:`mgr.tempo.dataset`: tempo sets of any size from the synthesizer (train styles, held-out
  styles, click tracks) and from any dataset with a ``tempo_bpm`` column;
* :mod:`mgr.tempo.model`: the Keras model (dilated 1-D convolutions over the log-BPM axis);
* :mod:`mgr.tempo.train`: training with scale augmentation, ONNX export and the card;
* :mod:`mgr.tempo.protocol`: Acc1/Acc2/MAE, per-genre Acc1 and the octave-error breakdown;
* :mod:`mgr.tempo.estimate`: the predict-time estimator (``auto | dsp | learned``).

Nothing here imports TensorFlow at module level.
"""
