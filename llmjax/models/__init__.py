"""Model families built from blocks; importing this package registers each in the registry."""
from llmjax.models import bert, encdec, gpt, lstm, registry, word2vec
from llmjax.models.bert import BERT, BertConfig
from llmjax.models.encdec import EncDecConfig, EncoderDecoder
from llmjax.models.gpt import GPT, GPTConfig
from llmjax.models.lstm import LSTM, LSTMConfig
from llmjax.models.word2vec import Word2Vec, Word2VecConfig

__all__ = ["BERT", "GPT", "LSTM", "BertConfig", "EncDecConfig", "EncoderDecoder", "GPTConfig", "LSTMConfig",
           "Word2Vec", "Word2VecConfig", "bert", "encdec", "gpt", "lstm", "registry", "word2vec"]
