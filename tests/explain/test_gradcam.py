from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidlib.explain.cam import model_cam
from reidlib.explain.gradcam import grad_cam, grad_cam_layers, implicit_attention, matching_regions
from reidlib.explain.targets import class_target, embedding_dim_target, similarity_target

from .conftest import assert_same_state, make_model, snapshot


def _stem_activation(model, images):
    """Output of model.stem[3] (the second conv, before its ReLU), computed without the model's forward."""
    s = model.stem
    x = F.conv2d(images, s[0].weight, s[0].bias, stride=2, padding=1)
    x = F.batch_norm(x, s[1].running_mean, s[1].running_var, s[1].weight, s[1].bias, False, 0.0, s[1].eps)
    return F.conv2d(F.relu(x), s[3].weight, s[3].bias, stride=2, padding=1)


def _branch_scale(model, i=0):
    bn = model.branches[i][1]
    return bn.weight / torch.sqrt(bn.running_var + bn.eps)


@torch.no_grad()
def test_grad_cam_matches_hand_derived_gradient(model, images):
    # y_c = W_c . GAP(F),  F_k = s_k (V R)_k + const,  R = ReLU(A)  (eval-mode BN is affine), so
    # dy_c/dA_m(i,j) = [A_m(i,j) > 0] * sum_k W_ck s_k V_km / (h w).
    classes = torch.tensor([0, 3, 1, 4])
    got = grad_cam(model, images, class_target(classes), layer="stem.3")
    a = _stem_activation(model, images)
    h, w = a.shape[2:]
    v = model.branches[0][0].weight[:, :, 0, 0]  # (k, m)
    coef = (model.classifiers[0].weight[classes] * _branch_scale(model)) @ v / (h * w)  # (B, m)
    grad = coef[:, :, None, None] * (a > 0)
    alpha = grad.mean(dim=(2, 3))
    expected = torch.einsum("bm,bmhw->bhw", alpha, a).clamp_min(0)
    torch.testing.assert_close(got.maps, expected, rtol=1e-5, atol=1e-6)
    assert got.layer == "stem.3" and got.maps.shape == (4, 8, 4)


def test_grad_cam_on_last_maps_is_cam_over_hw(model3, images):
    classes = torch.tensor([1, 1, 0, 2])
    cams = model_cam(model3, images, classes)
    results = grad_cam_layers(model3, images, class_target(classes, branch=None), [0, 1, 2])
    for i, result in enumerate(results):
        torch.testing.assert_close(result.maps, cams.maps[i].clamp_min(0) / 32, rtol=1e-5, atol=1e-6)


def test_grad_cam_similarity_matches_autograd_in_test(model, images):
    other = torch.randn(6, generator=torch.Generator().manual_seed(3))
    got = grad_cam(model, images, similarity_target(other), layer="stem.3")
    # Independent forward from the stem activation, differentiated here.
    a = _stem_activation(model, images).requires_grad_(True)
    br = model.branches[0]
    fmap = F.batch_norm(F.conv2d(F.relu(a), br[0].weight, br[0].bias), br[1].running_mean,
                        br[1].running_var, br[1].weight, br[1].bias, False, 0.0, br[1].eps)
    emb = F.normalize(fmap.mean(dim=(2, 3)), dim=1)
    sim = (F.normalize(emb, dim=1) * F.normalize(other, dim=0)).sum()
    (grad,) = torch.autograd.grad(sim, a)
    expected = (grad.mean(dim=(2, 3))[:, :, None, None] * a.detach()).sum(1).clamp_min(0)
    torch.testing.assert_close(got.maps, expected, rtol=1e-4, atol=1e-6)


def test_grad_cam_leaves_model_untouched(images):
    model = make_model(branches=2)
    model.branches[1].eval()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = snapshot(model)
    grad_cam(model, images, class_target(0), layer="branches.1.0")
    matching_regions(model, images[0], images[1], layer="stem.3", k=2)
    assert_same_state(before, snapshot(model))


def test_grad_cam_works_with_frozen_parameters_and_no_grad(model, images):
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        result = grad_cam(model, images, embedding_dim_target([0, 2]), layer=0)
    assert result.maps.abs().sum() > 0
    assert all(not p.requires_grad for p in model.parameters())


def test_batch_equals_one_by_one(model, images):
    target = embedding_dim_target([1, 3], normalize=True)
    batch = grad_cam(model, images, target, layer="stem.0").maps
    single = torch.cat([grad_cam(model, images[i], target, layer="stem.0").maps for i in range(4)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-6)


def test_matching_regions_picks_top_contributions(model3, images):
    result = matching_regions(model3, images[0], images[2], layer=1, k=3)
    model3.eval()
    with torch.no_grad():
        emb = F.normalize(model3(images[[0, 2]]).embedding, dim=1)
    terms = emb[0] * emb[1]
    assert result.dims.tolist() == terms.topk(3).indices.tolist()
    assert result.similarity == pytest.approx(float(terms.sum()), abs=1e-6)
    assert result.maps_a.shape == (3, 8, 4) and result.maps_b.shape == (3, 8, 4)
    one = grad_cam(model3, images[2], embedding_dim_target(int(result.dims[1]), normalize=True), layer=1)
    torch.testing.assert_close(result.maps_b[1], one.maps[0], rtol=1e-5, atol=1e-6)


def test_implicit_attention_accumulates_top_dims(model3, images):
    result = implicit_attention(model3, images[:2], layer="stem.3", k=4)
    model3.eval()
    with torch.no_grad():
        emb = model3(images[:2]).embedding
    for b in range(2):
        dims = emb[b].topk(4).indices
        # Grad-CAM's channel weights are linear in the gradient: accumulate the 4 gradients by hand.
        single = [
            grad_cam(model3, images[b], embedding_dim_target(int(d), normalize=True), "stem.3", relu=False)
            for d in dims
        ]
        summed = torch.stack([s.maps[0] for s in single]).sum(0).clamp_min(0)
        torch.testing.assert_close(result.maps[b], summed, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        implicit_attention(model3, images[:1], k=100)


def test_grad_cam_errors(model3, images):
    with pytest.raises(ValueError, match="no layer named 'layer9'"):
        grad_cam(model3, images, class_target(0), layer="layer9")
    with pytest.raises(ValueError, match="branch 3 out of range"):
        grad_cam(model3, images, class_target(0), layer=3)
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(model3, images, class_target(5), layer=0)
    with pytest.raises(ValueError, match="does not depend"):
        grad_cam(model3, images, class_target(0, branch=0), layer="branches.1.0")
    with pytest.raises(ValueError, match=r"\(B,\)"):
        grad_cam(model3, images, lambda out: out.embedding, layer=0)
    with pytest.raises(ValueError, match="ran 2 times"):
        model3.branches[2] = model3.branches[1]
        grad_cam(model3, images, class_target(0), layer="branches.1.0")
    assert all(len(m._forward_hooks) == 0 for m in model3.modules())  # removed even after errors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grad_cam_on_cuda(model, images):
    model = model.cuda()
    result = grad_cam(model, images, class_target(1), layer="stem.3")
    cpu = grad_cam(model.cpu(), images, class_target(1), layer="stem.3")
    assert result.maps.is_cuda
    torch.testing.assert_close(result.maps.cpu(), cpu.maps, rtol=1e-3, atol=1e-5)
