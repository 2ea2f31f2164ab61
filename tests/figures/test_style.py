import pytest

from reidlib.figures.style import OKABE_ITO, _rgb_distance, category_colors


@pytest.mark.parametrize("n", [1, 8, 9, 16, 24])
def test_category_colors_start_with_okabe_ito_and_stay_distinct(n):
    colors = category_colors(n)
    assert len(colors) == n
    assert colors[: min(n, 8)] == OKABE_ITO[: min(n, 8)]
    distinct = colors[: len(set(colors))]
    pairs = [_rgb_distance(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]
    assert not pairs or min(pairs) > 0.1  # no near-duplicates such as seaborn's copy of Okabe-Ito blue
