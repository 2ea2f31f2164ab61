import pytest

from reidlib.scale import SCALE_ENV, SCALES, reported_scales, resolve_scale, select


def test_requested_scale_used_without_env(monkeypatch):
    monkeypatch.delenv(SCALE_ENV, raising=False)
    assert resolve_scale("smoke") == "smoke"
    assert resolve_scale(" FULL ") == "full"
    assert resolve_scale(None) == "cpu"


def test_env_overrides_requested(monkeypatch):
    monkeypatch.setenv(SCALE_ENV, "smoke")
    assert resolve_scale("full") == "smoke"


def test_empty_env_is_ignored(monkeypatch):
    monkeypatch.setenv(SCALE_ENV, "")
    assert resolve_scale("full") == "full"


def test_unknown_scale_lists_valid_ones(monkeypatch):
    monkeypatch.delenv(SCALE_ENV, raising=False)
    with pytest.raises(ValueError, match="smoke, cpu, full"):
        resolve_scale("huge")
    monkeypatch.setenv(SCALE_ENV, "gpu")
    with pytest.raises(ValueError, match=r"\$REIDLIB_SCALE"):
        resolve_scale("cpu")


def test_select_picks_and_validates():
    options = {"smoke": 1, "cpu": 2, "full": 3}
    assert [select(s, options) for s in SCALES] == [1, 2, 3]
    with pytest.raises(ValueError, match="no option for scale 'full'"):
        select("full", {"smoke": 1, "cpu": 2})
    with pytest.raises(ValueError, match="unknown scale keys"):
        select("cpu", {"cpu": 1, "gpu": 2})


def test_reported_scales_leave_out_smoke_unless_building_at_smoke():
    assert reported_scales("smoke") == SCALES
    assert reported_scales("cpu") == reported_scales("full") == ("cpu", "full")
    with pytest.raises(ValueError, match="smoke, cpu, full"):
        reported_scales("laptop")
