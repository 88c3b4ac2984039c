"""The input forms of a release (extracted trees, ILSVRC tars, Kaggle's layout and zip, the devkit,
ImageNetV2), found, indexed, read and narrowed to a subset; imports only common, preprocess.errors
and preprocess.paths."""
