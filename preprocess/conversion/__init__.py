"""Listed images to shards: one image decoded, repaired, resized and encoded, the pixel statistics,
each shard written or kept on resume, and the Beam graph; imports only common, preprocess.errors,
preprocess.paths and preprocess.inputs."""
