"""PMM's block ranking (Eq. 1) and Hard-Mix (Eq. 2), and Table 3's alternatives, on hand-made inputs."""

import pytest
import torch

from reidlib.layers.feature_mix import (
    attentive_cutmix,
    block_scores,
    cutmix_boxes,
    cutout_blocks,
    hard_mix,
    hardest_negative_partners,
    negative_partners,
    random_block_mask,
    top_block_mask,
)


def test_block_scores_sum_each_block():
    cam = torch.arange(24.0).reshape(1, 6, 4)  # 6x4 map, 3x2 blocks -> 2x2 blocks
    scores = block_scores(cam, (3, 2))
    assert scores.shape == (1, 2, 2)
    assert scores[0, 0, 0] == cam[0, :3, :2].sum() and scores[0, 1, 1] == cam[0, 3:, 2:].sum()


def test_top_block_mask_zeroes_the_k_most_salient_blocks():
    cam = torch.zeros(2, 24, 8)  # the paper's 24x8 map in 3x2 blocks: 8 x 4 = 32 blocks
    cam[0, 0:3, 0:2] = 5.0    # block (0, 0)
    cam[0, 21:24, 6:8] = 4.0  # block (7, 3)
    cam[0, 9:12, 2:4] = 3.0   # block (3, 1)
    cam[0, 12, 4] = 2.9       # block (4, 2): fourth, not selected with k = 3
    cam[1, 3:6, 0:2] = 1.0
    mask = top_block_mask(cam, (3, 2), 3)
    assert mask.shape == (2, 24, 8) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask[0, 0:3, 0:2].sum() == 0 and mask[0, 21:24, 6:8].sum() == 0 and mask[0, 9:12, 2:4].sum() == 0
    assert mask[0, 12:15, 4:6].sum() == 6  # the fourth block is kept
    assert int((mask[0] == 0).sum()) == 3 * 6
    assert mask[1, 3:6, 0:2].sum() == 0 and int((mask[1] == 0).sum()) == 3 * 6  # ties: lowest index first
    assert top_block_mask(cam, (3, 2), 0).eq(1).all()


def test_block_masks_with_every_block():
    cam = torch.rand(3, 24, 8)
    assert top_block_mask(cam, (3, 2), 32).eq(0).all()  # K = all blocks: nothing of the anchor is kept
    rand = random_block_mask(3, 24, 8, (3, 2), 32, torch.Generator().manual_seed(0))
    assert rand.eq(0).all()
    assert random_block_mask(3, 24, 8, (3, 2), 0, torch.Generator().manual_seed(0)).eq(1).all()


def test_block_mask_errors_name_the_sizes():
    with pytest.raises(ValueError, match="cannot be cut into 5x2 blocks"):
        top_block_mask(torch.rand(1, 24, 8), (5, 2), 3)
    with pytest.raises(ValueError, match="k = 40 blocks requested, but a 24x8 map has 32 blocks"):
        top_block_mask(torch.rand(1, 24, 8), (3, 2), 40)


def test_random_block_mask_draws_k_blocks_from_the_generator():
    a = random_block_mask(4, 24, 8, (3, 2), 6, torch.Generator().manual_seed(1))
    b = random_block_mask(4, 24, 8, (3, 2), 6, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and ((a == 0).flatten(1).sum(dim=1) == 6 * 6).all()
    assert not torch.equal(a[0], a[1]) or not torch.equal(a[1], a[2])


def test_negative_partners_have_another_identity():
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    for seed in range(5):
        partners = negative_partners(pids, torch.Generator().manual_seed(seed))
        assert (pids[partners] != pids).all()
    with pytest.raises(ValueError, match="single identity"):
        negative_partners(torch.tensor([3, 3, 3]))


def test_hardest_negative_is_the_closest_other_identity():
    feats = torch.tensor([[0.0], [0.1], [1.0], [5.0]])
    pids = torch.tensor([0, 0, 1, 2])
    assert hardest_negative_partners(feats, pids).tolist() == [2, 2, 1, 2]


def test_hard_mix_is_eq2_and_cutout_has_no_partner():
    anchor = torch.arange(2 * 3 * 4 * 2, dtype=torch.float).reshape(2, 3, 4, 2).requires_grad_()
    mask = torch.ones(2, 4, 2)
    mask[:, 0] = 0  # the top row replaced
    partners = torch.tensor([1, 0])
    mixed = hard_mix(anchor, mask, partners)
    assert torch.equal(mixed[0, :, 0], anchor[1, :, 0]) and torch.equal(mixed[0, :, 1:], anchor[0, :, 1:])
    assert torch.equal(mixed[1, :, 0], anchor[0, :, 0])
    mixed.sum().backward()  # every cell of the batch is used exactly once
    assert torch.equal(anchor.grad, torch.ones_like(anchor))
    cut = cutout_blocks(anchor.detach(), mask)
    assert cut[:, :, 0].abs().sum() == 0 and torch.equal(cut[:, :, 1:], anchor.detach()[:, :, 1:])
    with pytest.raises(ValueError, match="does not match"):
        hard_mix(anchor, torch.ones(2, 3, 2), partners)


def test_cutmix_box_area_is_the_label_weight():
    images = torch.stack([torch.full((3, 32, 16), float(i)) for i in range(4)])
    mixed, partners, keep = cutmix_boxes(images, torch.Generator().manual_seed(0))
    again = cutmix_boxes(images, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again[0]) and torch.equal(partners, again[1])
    for i in range(4):
        own = (mixed[i, 0] == i).float().mean()
        if partners[i] != i:
            assert torch.isclose(own, keep[i])
    assert ((keep > 0) & (keep <= 1)).all()


def test_attentive_cutmix_pastes_the_partners_salient_cells():
    images = torch.stack([torch.full((3, 8, 4), float(i)) for i in range(2)])
    saliency = torch.zeros(2, 4, 2)
    saliency[1, 0, 0] = 1.0  # sample 1's most salient cell: top-left of a 4x2 grid
    mixed, keep = attentive_cutmix(images, saliency, torch.tensor([1, 0]), (4, 2), 1)
    assert (mixed[0, :, 0:2, 0:2] == 1).all() and (mixed[0, :, 2:] == 0).all()
    assert keep[0] == pytest.approx(7 / 8)
