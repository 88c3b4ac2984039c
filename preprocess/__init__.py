"""Stage 1: the Beam job that turns an ImageNet tree into validated TFRecord shards."""
