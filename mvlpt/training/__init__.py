"""Training and evaluation of prompts on the frozen CLIP: the run spec, the training loop,
checkpoints, the images and frozen-feature caches it reads, the metrics it reports."""
