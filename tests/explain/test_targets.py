from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidlib.explain.targets import class_target, embedding_dim_target, similarity_target
from reidlib.models.output import ReIDOutput


def _output() -> ReIDOutput:
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)]
    emb = torch.randn(3, 6, generator=g)
    return ReIDOutput(logits=logits, features=[], feature_maps=[], embedding=emb)


def test_class_target_per_branch_and_sum():
    out = _output()
    cls = torch.tensor([3, 0, 1])
    torch.testing.assert_close(class_target(cls, branch=1)(out), out.logits[1][torch.arange(3), cls])
    total = out.logits[0] + out.logits[1]
    torch.testing.assert_close(class_target(cls)(out), total[torch.arange(3), cls])
    torch.testing.assert_close(class_target(2)(out), total[:, 2])
    with pytest.raises(ValueError, match="out of range"):
        class_target([0, 1, 4])(out)
    with pytest.raises(ValueError, match="branch 2"):
        class_target(0, branch=2)(out)
    with pytest.raises(ValueError, match="batch of 3"):
        class_target([0, 1])(out)


def test_embedding_dim_target_shared_and_per_row():
    out = _output()
    torch.testing.assert_close(embedding_dim_target([1, 4])(out), out.embedding[:, 1] + out.embedding[:, 4])
    per_row = torch.tensor([[0], [5], [2]])
    torch.testing.assert_close(embedding_dim_target(per_row)(out), out.embedding[torch.arange(3), [0, 5, 2]])
    normed = F.normalize(out.embedding, dim=1)
    torch.testing.assert_close(embedding_dim_target(3, normalize=True)(out), normed[:, 3])
    with pytest.raises(ValueError, match="out of range"):
        embedding_dim_target(6)(out)
    with pytest.raises(ValueError, match="integer"):
        embedding_dim_target(1.5)


def test_similarity_target():
    out = _output()
    other = torch.randn(6)
    expected = F.normalize(out.embedding, dim=1) @ F.normalize(other, dim=0)
    torch.testing.assert_close(similarity_target(other)(out), expected)
    torch.testing.assert_close(similarity_target(other, normalize=False)(out), out.embedding @ other)
    with pytest.raises(ValueError, match="shape"):
        similarity_target(torch.randn(5))(out)
