"""Evaluation metrics computed from model outputs (ground floor: imports no models or training).

classification   confusion sums on device per batch, then accuracy / precision / recall / F1
text_scores      BLEU, chrF, ROUGE and placeholder accuracy of generated text against references
"""
