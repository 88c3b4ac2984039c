"""One training run: the loop, the schedule, the at-chance and dead-network checks, the log.

Imports common, the top of train, distributed, model_dir and evaluation."""
