"""llmjax: pretraining language models with JAX and Flax, from one CPU to a pod."""
__version__ = "0.1.0"
