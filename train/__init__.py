"""Stage 2: the TensorFlow trainer for AlexNet."""
