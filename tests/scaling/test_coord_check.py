"""The coordinate check on real text over a 16x width range: µP's activations stay in a band
across widths, the standard parametrization's logits and attention logits leave it."""
import os

import pytest

from llmjax.config import ConfigError
from llmjax.scaling import coord_check as cc

# max / min over widths at the last step. Under µP the attention logits spread the most: their
# random part at init shrinks as 1/sqrt(width) (it vanishes in the limit) until training's
# Theta(1) part takes over; standard's logits spread ~14x here, its block outputs ~100x.
BAND = 4.0


@pytest.fixture(scope="module")
def check():
    return cc.coord_check([16, 256], steps=3, num_layers=1, batch_size=4, seq_len=16)


def test_mup_stays_in_a_band_across_16x_width(check):
    spreads = {q: check.spread("mup", q) for q in check.values["mup"]}
    assert set(spreads) == {"embedding", "attn_logits_0", "block_0", "logits"}
    assert all(s < BAND for s in spreads.values()), spreads


def test_standard_logits_grow_beyond_the_band(check):
    for q in ("logits", "attn_logits_0", "block_0"):
        assert check.spread("standard", q) > BAND, q
        assert check.values["standard"][q][-1, -1] > check.values["standard"][q][-1, 0]  # growing


def test_plot_writes_a_png(check, tmp_path):
    pytest.importorskip("matplotlib")
    path = os.path.join(tmp_path, "coord.png")
    cc.plot(check, path)
    assert os.path.getsize(path) > 10_000


def test_bad_widths_are_one_line():
    with pytest.raises(ConfigError, match="multiple of 4"):
        cc.coord_check([16, 30])
