"""RandomIdentitySampler: P x K structure, exact length, determinism per (seed, epoch), errors."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from reidlib.data.records import Record
from reidlib.data.samplers import RandomIdentitySampler, pk_batch_indices


def _records(counts: list[int]) -> list[Record]:
    return [Record(f"p{pid}_{i}.jpg", pid, i % 3) for pid, n in enumerate(counts) for i in range(n)]


COUNTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 2, 3]


def test_batches_are_p_identities_times_k_images():
    recs = _records(COUNTS)
    sampler = RandomIdentitySampler(recs, batch_size=8, num_instances=2, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler) and len(order) % 8 == 0
    # groups per pid: max(1, n // 2) -> sum = 1+1+1+2+2+3+3+4+4+5+5+6+1+1 = 39, P = 4 -> 9 batches
    assert len(sampler) == 9 * 8
    for b in range(0, len(order), 8):
        pids = [recs[i].pid for i in order[b : b + 8]]
        per_pid = Counter(pids)
        assert len(per_pid) == 4 and set(per_pid.values()) == {2}
        for k in range(0, 8, 2):  # each identity's K images are consecutive
            assert pids[k] == pids[k + 1]


def test_identity_with_fewer_than_k_images_is_topped_up():
    recs = _records([1, 4, 4, 4])
    sampler = RandomIdentitySampler(recs, batch_size=8, num_instances=4, seed=3)
    order = list(sampler)
    for b in range(0, len(order), 8):
        pids = [recs[i].pid for i in order[b : b + 8]]
        if 0 in pids:
            assert pids.count(0) == 4 and {i for i in order[b : b + 8] if recs[i].pid == 0} == {0}


def test_images_within_an_identity_group_are_distinct_when_possible():
    recs = _records([6] * 6)
    order = list(RandomIdentitySampler(recs, batch_size=12, num_instances=3, seed=1))
    for g in range(0, len(order), 3):
        assert len(set(order[g : g + 3])) == 3
    # 6 ids x 2 groups = 12 groups, P = 4 -> 3 batches; nearly every image is used once per epoch
    assert len(order) == 36 and len(set(order)) >= 30


def test_deterministic_per_seed_and_epoch():
    recs = _records(COUNTS)
    a = RandomIdentitySampler(recs, 8, 2, seed=5)
    b = RandomIdentitySampler(recs, 8, 2, seed=5)
    assert list(a) == list(b) and list(a) == list(a)
    e0 = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) and list(a) != e0
    assert list(RandomIdentitySampler(recs, 8, 2, seed=6)) != e0


def test_accepts_plain_pid_list():
    sampler = RandomIdentitySampler([0, 0, 1, 1, 2, 2], batch_size=4, num_instances=2)
    assert len(sampler) == 4 and len(list(sampler)) == 4


def test_errors():
    recs = _records([4, 4, 4])
    with pytest.raises(ValueError, match="multiple of num_instances"):
        RandomIdentitySampler(recs, batch_size=10, num_instances=4)
    with pytest.raises(ValueError, match="only 3"):
        RandomIdentitySampler(recs, batch_size=16, num_instances=4)
    with pytest.raises(ValueError, match="num_instances"):
        RandomIdentitySampler(recs, batch_size=8, num_instances=0)


def test_pk_batch_indices_draws_p_identities_with_k_images_each():
    pids = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = pk_batch_indices(pids, p=3, k=2, generator=g)
        groups = [idx[i:i + 2] for i in range(0, 6, 2)]
        labels = [{pids[j] for j in grp} for grp in groups]
        assert all(len(lab) == 1 for lab in labels)  # each group is one identity
        assert len({next(iter(lab)) for lab in labels}) == 3  # three distinct identities
        for grp in groups:
            if pids[grp[0]] != 3:  # identities with >= K images are drawn without replacement
                assert len(set(grp)) == 2
    assert pk_batch_indices(pids, 2, 3, torch.Generator().manual_seed(1)) == pk_batch_indices(
        pids, 2, 3, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="needs P = 5 identities"):
        pk_batch_indices(pids, p=5, k=2)


def test_distributed_identity_sampler_splits_each_batch_by_identity():
    from reidlib.data.samplers import DistributedIdentitySampler

    pids = [p for p in range(12) for _ in range(5)]  # 12 identities x 5 images
    single = list(RandomIdentitySampler(pids, 16, 4, seed=3))
    ranks = [DistributedIdentitySampler(pids, 16, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(0)
    shares = [list(s) for s in ranks]
    assert all(len(share) == len(s) == len(single) // 2 for share, s in zip(shares, ranks, strict=True))
    for step in range(len(single) // 16):
        a, b = (share[step * 8:(step + 1) * 8] for share in shares)
        assert a + b == single[step * 16:(step + 1) * 16]  # the union is the single-process batch
        assert not {pids[i] for i in a} & {pids[i] for i in b}  # distinct identities per rank
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != shares[0]


def test_distributed_identity_sampler_errors():
    from reidlib.data.samplers import DistributedIdentitySampler

    pids = [p for p in range(6) for _ in range(4)]
    with pytest.raises(ValueError, match="P = 3 identities per batch cannot be split over 2 ranks"):
        DistributedIdentitySampler(pids, 12, 4, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        DistributedIdentitySampler(pids, 8, 4, rank=2, world_size=2)
