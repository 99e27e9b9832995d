"""Preparation artefacts: pen ink, folds, air bubbles and coverslip edges found on the thumbnail, and debris found in tiles."""
