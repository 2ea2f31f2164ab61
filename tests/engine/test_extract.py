import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from reidlib.engine.extract import Features, evaluate_model, extract_features, rank_features
from reidlib.models.output import ReIDOutput


class RowSum(nn.Module):
    """Embedding = per-column sums of the image, so a horizontal flip reverses the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(1)  # gives the model a train/eval distinction

    def forward(self, x):
        emb = x.sum(dim=(1, 2))  # (B, W)
        return ReIDOutput(logits=[], features=[emb], feature_maps=[x], embedding=emb)


def loader(images, pids, camids, batch_size=2):
    data = TensorDataset(images, torch.as_tensor(pids), torch.as_tensor(camids))
    return DataLoader(data, batch_size=batch_size)


def test_flip_average_normalise_and_mode_restored():
    x = torch.zeros(3, 1, 1, 2)
    x[:, 0, 0, 0] = torch.tensor([3.0, 1.0, 0.0])
    x[:, 0, 0, 1] = torch.tensor([4.0, 1.0, 2.0])
    model = RowSum().train()
    plain = extract_features(model, loader(x, [1, 2, 3], [0, 0, 0]), normalize=False)
    assert model.training
    assert isinstance(plain, Features) and plain.feats.dtype == torch.float32
    torch.testing.assert_close(plain.feats, torch.tensor([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]]))
    assert plain.pids.tolist() == [1, 2, 3] and plain.camids.dtype == np.int64

    normed = extract_features(model, loader(x, [1, 2, 3], [0, 0, 0]))
    torch.testing.assert_close(normed.feats[0], torch.tensor([0.6, 0.8]))
    flipped = extract_features(model.eval(), loader(x, [1, 2, 3], [0, 0, 0]), flip=True, normalize=False)
    assert not model.training
    torch.testing.assert_close(flipped.feats, torch.tensor([[3.5, 3.5], [1.0, 1.0], [1.0, 1.0]]))


def test_dict_batches_and_errors():
    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.ones(1, 1, 2) * i, "pid": i, "camid": 0, "index": i}

    feats = extract_features(RowSum(), DataLoader(Dicts(), batch_size=2), normalize=False)
    assert feats.feats.shape == (2, 2) and len(feats) == 2

    class NotReID(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="ReIDOutput"):
        extract_features(NotReID(), DataLoader(Dicts(), batch_size=2))
    with pytest.raises(ValueError, match="no batches"):
        extract_features(RowSum(), [])


def test_evaluate_model_ranks_matching_identities_first():
    # q1 = x axis (pid 1), q2 = y axis (pid 2); by angle q1 ranks g0 (pid 1), g2, g3 (pid 1), g1 and
    # q2 ranks g1 (pid 2), g3, g2 (pid 2), g0: each AP = (1/1 + 2/3) / 2
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 1, 2)
    g = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.3], [0.2, 1.0]]).view(4, 1, 1, 2)
    result = evaluate_model(RowSum(), loader(q, [1, 2], [0, 0]), loader(g, [1, 2, 2, 1], [1, 1, 1, 1]))
    assert result.num_valid == 2
    assert result.mAP == pytest.approx(5 / 6) and result.rank1 == pytest.approx(1.0)
    assert result.cmc[:3].tolist() == pytest.approx([1.0, 1.0, 1.0])
    qf = extract_features(RowSum(), loader(q, [1, 2], [0, 0]))
    gf = extract_features(RowSum(), loader(g, [1, 2, 2, 1], [1, 1, 1, 1]))
    again = rank_features(qf, gf)
    assert again.mAP == pytest.approx(result.mAP)


def test_rank_features_with_rerank_and_ap_mode():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 8, generator=g)
    q_pids, g_pids = np.arange(5), np.repeat(np.arange(5), 4)
    q = Features(centers + 0.3 * torch.randn(5, 8, generator=g), q_pids, np.zeros(5, dtype=np.int64))
    noise = 0.3 * torch.randn(20, 8, generator=g)
    gal = Features(centers[g_pids] + noise, g_pids, np.ones(20, dtype=np.int64))
    plain = rank_features(q, gal)
    reranked = rank_features(q, gal, rerank=True, rerank_params=(4, 2, 0.3))
    assert plain.mAP > 0.5 and reranked.mAP > 0.5 and reranked.num_valid == 5
    assert rank_features(q, gal, ap_mode="trapezoid").ap_mode == "trapezoid"


def test_descriptors_of_mixed_sizes_equal_each_image_alone():
    from reidlib.engine.extract import descriptors, forward_any_size, size_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveMaxPool2d(1),
                                torch.nn.Flatten())

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            f = self.net(x)
            return ReIDOutput(logits=[], features=[f], feature_maps=[], embedding=f)

    net = Wrap().eval()
    images = [torch.randn(3, h, 4) for h in (8, 6, 8, 10, 6)]
    assert [idx for _, idx in size_groups(images, 2)] == [[0, 2], [1, 4], [3]]
    together = descriptors(net, images, batch_size=2)
    alone = torch.cat([net(im[None]).embedding for im in images])
    assert torch.allclose(together, alone, atol=1e-6)
    out = forward_any_size(net, {"image": images})
    assert torch.equal(out.embedding, together) and out.features[0] is out.embedding
    with pytest.raises(ValueError, match="no images"):
        descriptors(net, [])


class NaNForBrightImages(nn.Module):
    """Embedding = mean colour; NaN for images brighter than 0.5, inf for pure white ones - as a model
    with a diverged layer does for some inputs only."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # descriptors() reads the device off a parameter

    def forward(self, x):
        emb = x.mean(dim=(2, 3))  # (B, 3)
        bright = emb.mean(1) > 0.5
        emb = torch.where(bright[:, None], torch.full_like(emb, torch.nan), emb)
        emb[(x == 1.0).flatten(1).all(1), 0] = torch.inf
        return ReIDOutput(logits=[], features=[emb], feature_maps=[x], embedding=emb)


def _image_dataset(levels):
    from PIL import Image

    from reidlib.data.dataset import ImageDataset

    records = [(f"cam0/person_{i:03d}.jpg", i, 0) for i in range(len(levels))]
    colours = {path: level for (path, _, _), level in zip(records, levels, strict=True)}

    def source(path):
        return Image.new("RGB", (2, 4), (colours[path],) * 3)

    return ImageDataset(records, image_source=source)


def test_non_finite_embedding_names_the_image_path():
    from reidlib.evaluation.arrays import NonFiniteError

    dataset = _image_dataset([10, 20, 30, 200, 40])  # image 3 is bright
    model = NaNForBrightImages().train()
    expected = (r"^query embeddings of batch 1 \(rows 2\.\.3\): 1 of 2 image rows holds NaN "
                r"\(row 3: cam0/person_003\.jpg\); the model's output is not finite")
    with pytest.raises(NonFiniteError, match=expected):
        extract_features(model, DataLoader(dataset, batch_size=2), desc="query")
    assert model.training  # the mode is restored on the error path too
    # With flip and normalisation on, the raw embedding is what is checked (and named).
    with pytest.raises(NonFiniteError, match=r"\(row 3: cam0/person_003\.jpg\)"):
        extract_features(model, DataLoader(dataset, batch_size=4), flip=True)
    white = _image_dataset([10, 255, 20, 150])
    both = r"2 of 4 image rows hold NaN and inf \(row 1: cam0/person_001\.jpg, row 3: cam0/person_003\.jpg\)"
    with pytest.raises(NonFiniteError, match=both):
        extract_features(model, DataLoader(white, batch_size=4))
    clean = extract_features(model, DataLoader(_image_dataset([10, 20, 30]), batch_size=2))
    assert clean.feats.shape == (3, 3) and torch.isfinite(clean.feats).all()


def test_non_finite_embedding_without_records_names_the_running_row():
    from reidlib.evaluation.arrays import NonFiniteError

    x = torch.zeros(5, 3, 2, 2)
    x[4] = 0.9  # the fifth image, in the third batch of two
    with pytest.raises(NonFiniteError, match=r"^extract embeddings of batch 2 \(rows 4\.\.4\): 1 of 1 image "
                                             r"rows holds NaN \(row 4\);"):
        extract_features(NaNForBrightImages(), loader(x, [0] * 5, [0] * 5))


def test_extract_records_names_the_image_path():
    from reidlib.engine.extract import extract_records
    from reidlib.evaluation.arrays import NonFiniteError

    dataset = _image_dataset([10, 20, 200])
    with pytest.raises(NonFiniteError, match=r"\(row 2: cam0/person_002\.jpg\)"):
        extract_records(NaNForBrightImages(), dataset.records, dataset.image_source,
                        lambda im: torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1),
                        chunk=2)
