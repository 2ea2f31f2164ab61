"""Session-wide test settings."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _pretrain_cache(tmp_path_factory):
    """Pre-trained trunks (a chapter's smoke config loads one; it trains in about a second) go to a
    temporary cache, never the repository's ``.cache``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("REIDLIB_CACHE", str(tmp_path_factory.mktemp("reidlib_cache")))
    yield
    mp.undo()
