"""Where training runs: auto falls back to the CPU without CUDA; cuda without it is refused."""

from __future__ import annotations

import pytest
import torch

from autoprune.errors import UserError
from autoprune.training import Compute


def test_auto_trains_on_cuda_only_where_it_is_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Compute("auto").resolve().type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(UserError, match="finetune.device=cuda, but CUDA is not available"):
        Compute("cuda").resolve()


def test_mixed_precision_autocasts_and_fp16_scales_only_on_cuda():
    cpu = torch.device("cpu")
    with Compute("cpu", "bf16").autocast(cpu):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    with Compute("cpu", "fp32").autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    assert Compute("cpu", "fp16").scaler(cpu) is None
