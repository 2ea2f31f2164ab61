"""BDB and PMM (seed 004): shapes, the training-only drop and mix, Eq. 1-2 inside the forward pass, and the
in-training Grad-CAM that leaves no gradient, hook or mode change behind."""

import pytest
import torch

from reidlib.losses.multi_part import MultiPartLoss
from reidlib.models.backbone import build_backbone
from reidlib.models.pmm import BDBNet, PMMNet

PIDS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def _backbone():
    torch.manual_seed(0)
    return build_backbone(18, 16, last_stride=1)  # 128 channels; 96x32 -> a 6x2 map


def _pmm(**kwargs):
    return PMMNet(4, _backbone(), dim=32, block=(3, 1), **kwargs)


def test_bdb_shapes_and_training_only_drop():
    model = BDBNet(4, _backbone(), global_dim=32, part_dim=64)
    out = model(torch.randn(8, 3, 96, 32))
    assert [tuple(t.shape) for t in out.logits] == [(8, 4), (8, 4)]
    assert out.embedding.shape == (8, 32 + 64) and out.feature_maps[0].shape == (8, 128, 6, 2)
    mask = out.extras["drop_mask"]
    assert mask.shape == (6, 2) and int((mask == 0).sum()) == 2 * 2  # a third of the height, full width
    assert (out.feature_maps[1][:, :, mask == 0] == 0).all()  # the same band for the whole batch
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 32))
    assert "drop_mask" not in out.extras and bool((out.feature_maps[1] != 0).any())


def test_pmm_eval_mixes_nothing_and_concatenates_the_stages():
    model = _pmm().eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 96, 32))
    assert len(out.logits) == len(out.features) == 3 and out.embedding.shape == (3, 96)
    assert all(torch.equal(m, out.feature_maps[0]) for m in out.feature_maps[1:])
    assert out.extras == {}


def test_pmm_training_mixes_the_top_blocks_with_a_negative():
    model = _pmm(k=1).train()
    out = model(torch.randn(8, 3, 96, 32), PIDS, generator=torch.Generator().manual_seed(0))
    maps, masks, partners = out.feature_maps[0], out.extras["masks"], out.extras["partners"]
    assert masks.shape == (8, 2, 6, 2) and out.extras["cams"].shape == (8, 2, 6, 2)
    assert ((masks == 0).flatten(2).sum(dim=2) == 3).all()  # one 3x1 block per image and stage
    assert (PIDS[partners] != PIDS[:, None]).all()
    for s in range(2):  # Eq. 2 on a fresh copy of F for both stages (not cumulative)
        m = masks[:, s].unsqueeze(1)
        expected = m * maps + (1 - m) * maps[partners[:, s]]
        assert torch.allclose(out.feature_maps[s + 1], expected)
    # Eq. 1: the zeroed block is the one where the guiding Grad-CAM sums highest.
    cam = out.extras["cams"][:, 0].reshape(8, 2, 3, 2).sum(dim=2)  # (B, blocks down, cols)
    zero = (masks[:, 0] == 0).reshape(8, 2, 3, 2).any(dim=2)
    assert torch.equal(cam.flatten(1).argmax(dim=1), zero.flatten(1).float().argmax(dim=1))


def test_in_training_gradcam_leaves_no_gradient_behind():
    torch.manual_seed(1)
    model = _pmm(k=2).train()
    x = torch.randn(8, 3, 96, 32)
    loss_fn = MultiPartLoss(label_smoothing=0.1, margin=None, triplet_on="parts")
    out = model(x, PIDS, generator=torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in model.parameters())  # the Grad-CAM passes wrote no gradient
    assert model.training and not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    state = torch.get_rng_state()
    loss_fn(out, {"pid": PIDS})[0].backward()
    with_cam = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch.set_rng_state(state)
    replay = model(x, PIDS, masks=out.extras["masks"], partners=out.extras["partners"])
    loss_fn(replay, {"pid": PIDS})[0].backward()
    constants = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert with_cam.keys() == constants.keys()
    for name, grad in with_cam.items():
        assert torch.allclose(grad, constants[name], atol=1e-6, rtol=1e-5), name


def _batch_statistics_only(model):
    """BatchNorm that always normalises with the batch's statistics: train and eval mode then compute
    the same function, so the in-training Grad-CAM and the explainer's (eval mode) see the same graph."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    return model


def test_in_training_gradcam_equals_the_explainers():
    from reidlib.explain.gradcam import grad_cam
    from reidlib.explain.targets import class_target

    model = _batch_statistics_only(_pmm(k=1)).train()
    x = torch.randn(8, 3, 96, 32)
    in_loop = model(x, PIDS, generator=torch.Generator().manual_seed(0)).extras["cams"][:, 0]
    explained = grad_cam(model, x, class_target(PIDS, branch=0), layer=0)  # stage I's logit on F
    assert model.training  # the explainer restores the mode
    assert in_loop.shape == explained.maps.shape == (8, 6, 2) and bool((explained.maps > 0).any())
    assert torch.allclose(in_loop, explained.normalized(), atol=1e-5)  # both scaled to [0, 1] per map


def test_pmm_variants():
    x = torch.randn(8, 3, 96, 32)
    cut = _pmm(mix="cutout", k=1).train()(x, PIDS)
    assert (cut.feature_maps[1][cut.extras["masks"][:, 0].unsqueeze(1).expand_as(cut.feature_maps[1]) == 0]
            == 0).all()
    assert "partners" not in cut.extras
    rand = _pmm(guidance="random", k=1).train()(x, PIDS, generator=torch.Generator().manual_seed(3))
    assert "cams" not in rand.extras and rand.extras["masks"].shape == (8, 2, 6, 2)
    hard = _pmm(partner="hardest", k=1).train()(x, PIDS)
    assert (PIDS[hard.extras["partners"]] != PIDS[:, None]).all()
    plain = _pmm(mix="none").train()(x)
    assert all(torch.equal(m, plain.feature_maps[0]) for m in plain.feature_maps[1:])
    one = _pmm(stages=1).train()(x)
    assert len(one.logits) == 1 and one.embedding.shape == (8, 32)
    with pytest.raises(ValueError, match="needs the batch's pids"):
        _pmm().train()(x)
    with pytest.raises(ValueError, match="mix must be one of"):
        _pmm(mix="mixup")
    with pytest.raises(ValueError, match="stages must be 1, 2 or 3"):
        _pmm(stages=4)
