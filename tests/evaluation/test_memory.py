import pytest

from reidlib.evaluation.memory import format_bytes, parse_memory


@pytest.mark.parametrize(("text", "expected"), [
    ("6GB", 6 * 10**9), ("6 GiB", 6 * 2**30), ("512MiB", 512 * 2**20), ("1.5G", 1_500_000_000),
    ("100", 100), (2**20, 2**20), ("2kb", 2000), (" 3 tb ", 3 * 10**12),
])
def test_sizes_parse_to_bytes(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "6 GX", "-1GB", "0", 0, True, "", "1e9"])
def test_bad_sizes_name_the_argument(bad):
    with pytest.raises(ValueError, match="max_memory"):
        parse_memory(bad)


def test_format():
    assert format_bytes(3.83e9) == "3.83 GB" and format_bytes(2.5e6) == "2.5 MB"
