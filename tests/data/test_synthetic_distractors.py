import numpy as np
import pytest

from reidlib.data.synthetic import SynthReID
from reidlib.data.synthetic_distractors import iter_distractor_chunks, render_distractor


def test_distractors_are_deterministic_and_labelled_zero():
    synth = SynthReID("tiny", seed=0, height=32, width=16)
    a, cam_a, _ = render_distractor(synth, 3)
    b, cam_b, _ = render_distractor(synth, 3)
    assert a.shape == (32, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and cam_a == cam_b
    assert not np.array_equal(a, render_distractor(synth, 3, seed=1)[0])
    chunks = list(iter_distractor_chunks(synth, 7, chunk=3))
    assert [len(c[0]) for c in chunks] == [3, 3, 1]
    assert all((c[1] == 0).all() for c in chunks)
    assert np.array_equal(chunks[1][0][0], render_distractor(synth, 3)[0])
    kinds = {render_distractor(synth, i, background_share=0.5)[2] for i in range(20)}
    assert kinds == {True, False}
    with pytest.raises(ValueError):
        render_distractor(synth, -1)


def test_domain_b_distractors_are_its_own_people():
    from reidlib.data.synthetic import SynthReID
    from reidlib.data.synthetic_distractors import render_distractor

    a = SynthReID("tiny", seed=0, height=64, width=32)
    b = SynthReID("tiny", seed=0, height=64, width=32, domain="b")
    same = [np.array_equal(render_distractor(a, i)[0], render_distractor(b, i)[0]) for i in range(6)]
    assert not any(same)
    again = SynthReID("tiny", seed=0, height=64, width=32)
    assert np.array_equal(render_distractor(a, 3)[0], render_distractor(again, 3)[0])
