"""The batch-general gathers of dynamically gated layers, as TorchScript functions too.

A traced model keeps any batch size: under tracing the gated layers call the scripted twins,
whose batch size stays an input rather than a constant. ONNX cannot express a convolution
whose group count depends on the input, so inside `onnx_static_batch()` the gated layers
trace for the example's batch size only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn import functional as F  # noqa: N812 - the usual alias

_STATIC = {"on": False}  # set by onnx_static_batch()


def gate_scores(pooled: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 inputs: torch.Tensor | None) -> torch.Tensor:
    """Scores from pooled inputs; `inputs` (batch x kept) says which input channels the pooled
    values are, when an earlier gate kept only some."""
    if inputs is None:
        return F.linear(pooled, weight, bias)
    if pooled.shape[0] == 1:
        return F.linear(pooled, weight.index_select(1, inputs[0]), bias)
    columns = weight.t().index_select(0, inputs.reshape(-1)).reshape(
        inputs.shape[0], inputs.shape[1], weight.shape[0])
    return torch.bmm(pooled.unsqueeze(1), columns).squeeze(1) + bias


def producer_batch(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor, inputs: torch.Tensor | None, stride: list[int],
                    padding: list[int], dilation: list[int]) -> torch.Tensor:
    """Output channels `index` (batch x kept) of a convolution, chosen per example, over the
    input channels `inputs` (batch x kept, or None for all of them)."""
    batch, channels, height, width = x.shape
    keep = index.shape[1]
    if batch == 1:
        w = weight.index_select(0, index[0])
        if inputs is not None:
            w = w.index_select(1, inputs[0])
        return F.conv2d(x, w, bias.index_select(0, index[0]), stride, padding, dilation)
    w = weight.index_select(0, index.reshape(-1))
    if inputs is not None:
        w = w.reshape(batch, keep, weight.shape[1], weight.shape[2], weight.shape[3])
        w = torch.gather(w, 2, inputs[:, None, :, None, None].expand(
            batch, keep, channels, weight.shape[2], weight.shape[3]))
        w = w.reshape(batch * keep, channels, weight.shape[2], weight.shape[3])
    out = F.conv2d(x.reshape(1, batch * channels, height, width), w,
                   bias.index_select(0, index.reshape(-1)), stride, padding, dilation, batch)
    return out.reshape(batch, keep, out.shape[2], out.shape[3])


def consumer_batch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    inputs: torch.Tensor, stride: list[int], padding: list[int],
                    dilation: list[int]) -> torch.Tensor:
    """A convolution over the input channels `inputs` (batch x kept) only, per example."""
    batch, keep, height, width = x.shape
    if batch == 1:
        return F.conv2d(x, weight.index_select(1, inputs[0]), bias, stride, padding, dilation)
    outputs = weight.shape[0]
    w = weight.index_select(1, inputs.reshape(-1))
    w = w.reshape(outputs, batch, keep, weight.shape[2], weight.shape[3]).transpose(0, 1)
    b = bias.repeat(batch) if bias is not None else None
    out = F.conv2d(x.reshape(1, batch * keep, height, width),
                   w.reshape(batch * outputs, keep, weight.shape[2], weight.shape[3]),
                   b, stride, padding, dilation, batch)
    return out.reshape(batch, outputs, out.shape[2], out.shape[3])


# Traced models call these instead: the batch size stays an input, not a constant.
_SCRIPTED = {f: torch.jit.script(f) for f in (gate_scores, producer_batch, consumer_batch)}


def call_kernel(function, *args):  # noqa: ANN001, ANN002, ANN202 - one of the three above
    if torch.jit.is_tracing() and not _STATIC["on"]:
        return _SCRIPTED[function](*args)
    return function(*args)


@contextlib.contextmanager
def onnx_static_batch() -> Iterator[None]:
    """Within this block gated layers trace for the example input's batch size alone."""
    _STATIC["on"] = True
    try:
        yield
    finally:
        _STATIC["on"] = False
