import pytest

import reidlib.evaluation.arrays as arrays


@pytest.fixture(params=["numpy-fast-path", "torch-path"])
def code_path(request, monkeypatch):
    """Run a test through the CPU numpy/scipy fast paths and through the pure-torch code that CUDA
    tensors take (here on the CPU)."""
    monkeypatch.setattr(arrays, "NUMPY_FAST_PATHS", request.param == "numpy-fast-path")
    return request.param
