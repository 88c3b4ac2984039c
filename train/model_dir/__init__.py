"""The model directory: its lock, config and mean image, its checkpoints, a model restored from it.

Imports common and the top of train (config, model, input_pipeline, errors) only."""
