"""Stage 1: the Beam job that turns an ImageNet tree into validated TFRecord shards.

Rooms, each importing only those listed before it (and `common`): `errors` and `paths` (shared by
all), `inputs/` (the release's forms), `conversion/` (images to shards), `job/` (running a build);
`build_shards` is the command and the only module that defines flags.
"""
