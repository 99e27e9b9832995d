"""Synthetic degradations and artefacts with physical parameters, for training and for tests."""
