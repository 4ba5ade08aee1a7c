"""Tasks: what the one training loop trains; importing this package registers each one."""
from llmjax.tasks import classify, lm, mlm, qa, registry, seq2seq, tag, word2vec
from llmjax.tasks.base import Task

__all__ = ["Task", "classify", "lm", "mlm", "qa", "registry", "seq2seq", "tag", "word2vec"]
