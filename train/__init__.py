"""Stage 2: the TensorFlow trainer for AlexNet.

The commands (main, evaluate, export, predict, plot, data_service; report is the package
`report/`) and what every room shares (config, model, input_pipeline, errors) are at the top. The
rooms, each importing only those below it: distributed, model_dir, evaluation, run, report.
"""
