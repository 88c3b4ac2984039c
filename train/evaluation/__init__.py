"""Scoring a network on every image of a split: top-1/top-5, ten crops, ImageNet-ReaL.

Imports common, the top of train, distributed and model_dir."""
