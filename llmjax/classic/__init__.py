"""Classic representations beside the neural runs: bag of words and TF-IDF (scikit-learn), a
window of word features for token labelling, and the mean of Word2Vec vectors, each fitted by
logistic regression on the same data and splits as the classify and tag tasks and scored with
their metrics (`python -m llmjax.baseline`). scikit-learn is imported only here, when a
baseline runs: a machine that only trains models needs none of it.
"""
