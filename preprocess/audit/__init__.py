"""The duplicate audit: each stored image's fingerprint, the candidate search over hash buckets, the
confirmation on the stored images, and the groups of copies; imports only common,
preprocess.errors, preprocess.paths, preprocess.stores and preprocess.inputs."""
