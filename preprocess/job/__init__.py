"""Running one build from the launcher: plan, output folder, runner, progress, manifest and report,
a stop in one line; imports only common, preprocess.errors, preprocess.paths, preprocess.inputs and
preprocess.conversion."""
