import os

import pytest
import torch

# Triton kernels run on CPU tensors through the interpreter when there is no GPU. Must be set
# before Triton is imported; on a GPU machine the kernels are compiled as usual.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def use_backend(monkeypatch):
    """use_backend("cpp") forces SSGAN_FAST_BACKEND for the rest of the test."""
    def _set(name):
        monkeypatch.setenv("SSGAN_FAST_BACKEND", name)
    return _set
