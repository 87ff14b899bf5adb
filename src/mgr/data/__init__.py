"""Data in: sources (synthetic, folder, gtzan, fma), fetch, download, archive, probe, fingerprint, split (the one fold rule) and validation."""
