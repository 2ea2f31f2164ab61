import pytest
import torch
from torch import nn

from reidlib.engine.bn import FrozenBatchNorm, calibrate_bn, set_bn_eval


def test_calibrated_statistics_are_the_plain_average_over_the_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    # two sizes: they are batched separately, the statistics still cover every pixel of every image
    images = [torch.randn(3, 4, 2) * 2 + 5 for _ in range(5)] + [torch.randn(3, 6, 2) - 1 for _ in range(3)]
    calibrate_bn(model, images, batch_size=2)
    bn = model[0]
    batches = [torch.stack(images[i:i + 2]) for i in (0, 2)] + [images[4][None]]
    batches += [torch.stack(images[5:7]), images[7][None]]
    # momentum=None: the running value is the plain mean of the per-batch statistics
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches])
    variances = torch.stack([b.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True) for b in batches])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, variances.mean(0), atol=1e-4)
    assert bn.momentum == 0.1 and model.training  # restored
    assert int(bn.num_batches_tracked) == len(batches)


def test_calibration_needs_images():
    with pytest.raises(ValueError, match="no images"):
        calibrate_bn(nn.Sequential(nn.BatchNorm2d(3)), [])


def test_frozen_batch_norm_keeps_statistics_while_the_rest_trains():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    model.train()
    set_bn_eval(model)
    assert not model[1].training and model[2].training and model.training

    class T:
        pass

    trainer = T()
    trainer.model = model
    model.train()
    FrozenBatchNorm().on_step_start(trainer, 1)
    before = model[1].running_mean.clone()
    model(torch.randn(8, 4) + 3)
    assert torch.equal(model[1].running_mean, before)
