"""Training pipelines for llama2.c (Stories) transformers: the seed projects' static and dynamic
kernel decompositions on top of anekit's autodiff, optimizers and checkpoints."""
