from reidlib.data.records import Record, one_per_identity, records_by_pid


def test_one_per_identity_takes_one_image_per_identity_first():
    recs = [Record(f"{p}_{i}", p, 0) for p in (3, 1, 2) for i in range(3)]
    chosen = one_per_identity(recs, 4)
    assert [r.pid for r in chosen] == [1, 2, 3, 1]
    assert len(one_per_identity(recs, 100)) == 9


def test_records_by_pid_keeps_first_seen_order():
    recs = [Record("a", 2, 0), Record("b", 1, 0), Record("c", 2, 1)]
    assert records_by_pid(recs) == {2: [recs[0], recs[2]], 1: [recs[1]]}
    assert list(records_by_pid(recs)) == [2, 1]
