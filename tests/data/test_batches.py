import pytest
import torch

from reidlib.data.batches import UpdateBatches


class Items:
    """Dataset stub: image i is a (3, 2 + i % 2, 2) tensor filled with i, plus a random draw (like an
    augmentation) so the order of loading is visible in the RNG."""

    def __getitem__(self, i):
        return {"image": torch.full((3, 2 + i % 2, 2), float(i)) + 0 * torch.rand(1), "pid": i // 2,
                "camid": 0, "index": i}


def test_an_epoch_is_updates_times_passes_micro_batches_in_draw_order():
    g = torch.Generator().manual_seed(0)
    draws = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    batches = UpdateBatches(Items(), lambda gen: draws.pop(0), updates=2, passes=3, generator=g)
    assert len(batches) == 6
    out = list(batches)
    assert [b["index"].tolist() for b in out] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert [tuple(im.shape) for im in out[0]["image"]] == [(3, 2, 2), (3, 3, 2)]  # sizes may differ
    assert out[1]["pid"].tolist() == [1, 1]


def test_draws_use_the_loaders_generator_so_a_resumed_run_draws_the_same():
    def draw(gen):
        return torch.randperm(8, generator=gen)[:4].tolist()

    a = UpdateBatches(Items(), draw, updates=3, generator=torch.Generator().manual_seed(5))
    b = UpdateBatches(Items(), draw, updates=3, generator=torch.Generator().manual_seed(5))
    assert [x["index"].tolist() for x in a] == [x["index"].tolist() for x in b]
    state = a.generator.get_state()
    first = [x["index"].tolist() for x in a]
    a.generator.set_state(state)
    assert [x["index"].tolist() for x in a] == first


def test_a_draw_that_does_not_split_into_the_passes_is_refused():
    with pytest.raises(ValueError, match="drew 5 images"):
        list(UpdateBatches(Items(), lambda g: [0, 1, 2, 3, 4], updates=1, passes=2))
    with pytest.raises(ValueError, match="updates and passes"):
        UpdateBatches(Items(), lambda g: [0], updates=0)
