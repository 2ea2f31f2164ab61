from __future__ import annotations

import pytest
import torch

from reidlib.explain.model_state import as_batch, explaining, forward

from .conftest import make_model


def test_explaining_restores_mixed_training_flags():
    model = make_model()
    model.stem.eval()  # a mixed state, e.g. frozen BN in a training run
    flags = [m.training for m in model.modules()]
    with explaining(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == flags


def test_explaining_restores_after_error():
    model = make_model()
    with pytest.raises(RuntimeError), explaining(model):
        raise RuntimeError("boom")
    assert model.training


def test_as_batch_and_forward_errors():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        as_batch(torch.zeros(2, 1, 8, 8), torch.device("cpu"))
    assert as_batch(torch.zeros(3, 8, 4), torch.device("cpu")).shape == (1, 3, 8, 4)
    with pytest.raises(TypeError, match="ReIDOutput"):
        forward(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 4, 4))
