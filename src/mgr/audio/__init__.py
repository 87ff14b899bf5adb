"""Audio in: decoding every format a library holds (decode) and the one window tiler (windows)."""
