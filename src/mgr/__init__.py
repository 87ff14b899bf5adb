"""mgr: music genre recognition, tempo and tags, as a data-versioned pipeline."""
__version__ = "0.1.0"
