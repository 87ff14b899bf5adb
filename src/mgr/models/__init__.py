"""Model families: ``mgr.models.classical`` (scikit-learn / XGBoost) and ``mgr.models.deep`` (Keras)."""
