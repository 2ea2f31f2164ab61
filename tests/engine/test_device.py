import pytest
import torch

from reidlib.engine.device import check_device_name, resolve_device


def test_device_names_are_checked_without_a_gpu():
    assert check_device_name("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"--device='gpu' is not a device"):
        resolve_device("gpu", "--device")
    with pytest.raises(ValueError, match=r"device='cuda:x'"):
        check_device_name("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(ValueError, match=r"device='cuda:0' requested but CUDA is not available"):
        resolve_device("cuda:0")
