"""The nearest-neighbour agreement the Word2Vec benchmark reports, on hand-made vectors."""
import numpy as np

from llmjax.evaluation.neighbours import neighbour_overlap


def test_neighbour_overlap_counts_shared_top_k():
    a = {"x": np.array([1.0, 0.0]), "y": np.array([0.9, 0.1]), "z": np.array([0.0, 1.0]), "w": np.array([-1.0, 0.1])}
    assert neighbour_overlap(a, dict(a), ["x", "z"], 1) == 1.0
    b = {**a, "z": np.array([1.0, 0.05])}  # z is now x's nearest, and x is z's
    assert neighbour_overlap(a, b, ["x", "z"], 1) == 0.0  # x: y vs z; z: y vs x
    assert neighbour_overlap(a, b, ["x"], 2) == 1.0  # x's two nearest are {y, z} in both, in another order
