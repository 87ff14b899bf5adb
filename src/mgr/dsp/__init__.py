"""Signal processing: the one log-mel/STFT front end (frontend) and the handcrafted-feature and DSP-tempo kernels (kernels)."""
