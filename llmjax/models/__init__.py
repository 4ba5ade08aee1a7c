"""Model families built from blocks; importing this package registers each in the registry."""
from llmjax.models import bert, encdec, gpt, registry
from llmjax.models.bert import BERT, BertConfig
from llmjax.models.encdec import EncDecConfig, EncoderDecoder
from llmjax.models.gpt import GPT, GPTConfig

__all__ = ["BERT", "GPT", "BertConfig", "EncDecConfig", "EncoderDecoder", "GPTConfig", "bert", "encdec",
           "gpt", "registry"]
