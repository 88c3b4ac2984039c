"""The data contract shared by the preprocessing job and the trainer."""
