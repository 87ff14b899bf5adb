"""Features: the spectrogram store (store), feature tables incl. pretrained embeddings (tables) and the per-track parallel map (extract)."""
