"""Training on several machines: the tf.distribute strategy and the tf.data service.

Imports common and the top of train (config, errors) only."""
