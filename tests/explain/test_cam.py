from __future__ import annotations

import pytest
import torch
from torch import nn

from reidlib.explain.cam import class_activation_maps, classifier_weights, model_cam
from reidlib.layers.cam import class_activation_map
from reidlib.models.output import ReIDOutput

from .conftest import assert_same_state, make_model, snapshot


def test_cam_matches_definition_loop():
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 4, 3, 2, generator=g)
    weight = torch.randn(6, 4, generator=g)
    classes = torch.tensor([5, 1])
    got = class_activation_maps(fmap, weight, classes)
    for b in range(2):
        for x in range(3):
            for y in range(2):
                expected = sum(weight[classes[b], k] * fmap[b, k, x, y] for k in range(4))
                assert torch.isclose(got[b, x, y], expected, atol=1e-6)
    every = class_activation_maps(fmap, weight)
    assert every.shape == (2, 6, 3, 2)
    torch.testing.assert_close(every[1, 1], got[1])


def test_model_cam_spatial_mean_is_logit(model3, images):
    before = snapshot(model3)
    result = model_cam(model3, images)
    assert_same_state(before, snapshot(model3))
    model3.eval()
    with torch.no_grad():
        out = model3(images)
    total = torch.stack(out.logits).sum(0)
    assert torch.equal(result.classes, total.argmax(1))
    for i in range(3):
        assert result.maps[i].shape == (4, 8, 4)
        picked = out.logits[i].gather(1, result.classes[:, None]).squeeze(1)
        torch.testing.assert_close(result.maps[i].mean(dim=(1, 2)), picked, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.scores[i], picked, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.combined().mean(dim=(1, 2)), total.max(1).values, rtol=1e-5, atol=1e-5)


def test_model_cam_explicit_classes_and_errors(model, images):
    result = model_cam(model, images, classes=torch.tensor([0, 1, 2, 3]))
    assert result.classes.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="out of range"):
        model_cam(model, images, classes=torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="one class per sample"):
        model_cam(model, images, classes=torch.tensor([0, 1]))


def test_model_cam_rejects_model_breaking_the_contract(images):
    model = make_model()
    model.classifiers[0] = nn.Linear(6, 5, bias=True)
    with pytest.raises(ValueError, match="bias-free"):
        model_cam(model, images)
    model = make_model()
    original = model.forward

    def scaled_forward(x):
        out = original(x)
        out.logits = [2 * out.logits[0]]  # classifier no longer sees GAP(feature_maps)
        return out

    model.forward = scaled_forward
    with pytest.raises(ValueError, match="CAM contract"):
        model_cam(model, images)
    with torch.no_grad():
        out = make_model()(images)
    with pytest.raises(ValueError, match="classifiers"):
        classifier_weights(ReIDOutput(out.logits, out.features, out.feature_maps, out.embedding))
    out.feature_maps = out.feature_maps * 2
    with pytest.raises(ValueError, match="one classifier per branch"):
        classifier_weights(out)


def test_the_explainer_uses_the_one_cam_and_reads_weights_from_the_output(model3, images):
    assert class_activation_maps is class_activation_map  # one implementation, shared with the OAP loss
    with torch.no_grad():
        out = model3.eval()(images)
    assert all(w is fc.weight for w, fc in zip(out.class_weights, model3.classifiers, strict=True))
    original = model3.forward

    def doubled_weights(x):  # the explainer must use what the output says, not model.classifiers
        out = original(x)
        out.class_weights = [2 * w for w in out.class_weights]
        out.logits = [2 * s for s in out.logits]
        return out

    model3.forward = doubled_weights
    result = model_cam(model3, images)
    for i in range(3):
        picked = out.logits[i].gather(1, result.classes[:, None]).squeeze(1)
        torch.testing.assert_close(result.scores[i], 2 * picked, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"class_weights\[0\] of .* must be \(C, 6\)"):
        classifier_weights(ReIDOutput(out.logits, out.features, out.feature_maps, out.embedding,
                                      class_weights=[torch.zeros(5, 4)] * 3))
