"""Dynamically gated layers: each input runs only the channels that matter for it.

A gated group is a chain producer conv -> [BatchNorm] -> activations -> consumer conv, where
the producer's output channels reach nothing else (the inner channels of a residual block).
A light gate reads the producer's input, average-pooled and standardised (BatchNorm without
affine parameters, so that what differs between inputs drives it), through one Linear layer: a
score per channel. The `k` highest-scoring channels run, the others are skipped; `k` is the
searched value (the ratio removes channels, as for static channel pruning). The gate starts
input-independent, keeping the channels static L1 pruning would keep.

- Training (and BatchNorm recalibration) runs every channel and multiplies the skipped ones by
  zero. The mask's gradient reaches the scores straight through (Bengio et al., 2013), so the
  gate learns which channels each input needs while the backbone adapts.
- Inference gathers the kept channels' filters (BatchNorm folded in; the gate's
  standardisation folded into its Linear layer) and the consumer's
  matching input slices, and computes only those: `k` channels of work. At batch size 1 that
  is one ordinary convolution each; above 1, one grouped convolution with a group per example.

The model keeps all its weights: parameters grow by the gates, MACs fall with `k`.
A TorchScript trace keeps any batch size (the batch-general gathers are TorchScript
functions). ONNX cannot express a convolution whose group count depends on the input, so
inside `onnx_static_batch()` the gated layers trace for the example's batch size only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual alias

from autoprune.pruning.strategies.gate_kernels import (
    call_kernel,
    consumer_batch,
    gate_scores,
    producer_batch,
)

# The share of the mask's gradient the gate's scores receive. At 1 the channel choices change
# faster than a short fine-tuning can follow (digits, ResNet, 2 epochs, 75% gated: 0.946 test
# accuracy against 0.977 at 0.1 and 0.988 for static channel pruning).
GATE_GRADIENT = 0.1



class ChannelGate(nn.Module):
    """A score per output channel from the pooled input: Linear(standardise(pool(x)))."""

    def __init__(self, in_channels: int, channels: int, prior: torch.Tensor) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(in_channels, affine=False)
        self.fc = nn.Linear(in_channels, channels)
        with torch.no_grad():
            # Start input-independent and ranked like static L1 pruning.
            self.fc.weight.zero_()
            self.fc.bias.copy_(prior)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean((2, 3))
        norm = self.norm
        if self.training and len(pooled) > 1:
            pooled = norm(pooled)
        else:  # a batch of one has no spread: use the running statistics
            pooled = F.batch_norm(pooled, norm.running_mean, norm.running_var, eps=norm.eps)
        return self.fc(pooled)


class _Consumes:
    """A convolution whose input channels an earlier gate may have thinned (`_source`)."""

    _source: GatedConv2d | None

    def _consume(self, source: GatedConv2d | None) -> None:
        object.__setattr__(self, "_source", source)  # not a child: it stays where it is
        self.geometry = (list(self.stride), list(self.padding), list(self.dilation))

    def _inputs(self) -> torch.Tensor | None:
        """Which input channels arrive (batch x kept), or None when all of them do."""
        source = self._source
        return source.index if source is not None and source.compact else None


class GatedConv2d(_Consumes, nn.Conv2d):
    """The producer: scores its channels, then runs all of them masked or the kept ones only.

    It may also be an earlier chain's consumer; then only the input channels kept there are
    read, by the convolution and by the gate alike.
    """

    gate: ChannelGate
    keep: int

    def _setup(self, gate: ChannelGate, keep: int, norm: nn.BatchNorm2d | None) -> None:
        self.gate = gate
        self.keep = keep
        self.full = False  # run every channel in inference too (a reference for checks)
        object.__setattr__(self, "_norm", norm)
        if not hasattr(self, "_source"):
            self._consume(None)
        self._folded: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None \
            = None
        self.compact = False
        self.index: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keep={self.keep}"

    def train(self, mode: bool = True) -> GatedConv2d:
        self._folded = None
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - nn.Module's signature
        self._folded = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._folded = None
        super()._load_from_state_dict(*args, **kwargs)

    def _fold(self, area: int) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor,
                                        torch.Tensor]:
        """Inference weights: the gate's, with its standardisation and the pooling's 1/area
        folded in; the filters and bias, with the following BatchNorm folded in.

        Kept until the weights can change (a switch to training, a load, a move) or the input
        size does.
        """
        folded = self._folded
        # A trace records sizes as values: comparing them would only warn (and is not needed,
        # a traced model sees one input size).
        if folded is not None and (torch.jit.is_tracing() or folded[0] == area):
            return folded
        with torch.no_grad():
            weight = self.weight
            bias = self.bias if self.bias is not None else torch.zeros_like(weight[:, 0, 0, 0])
            norm = self._norm
            if norm is not None:
                a = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                weight = weight * a[:, None, None, None]
                bias = norm.bias + (bias - norm.running_mean) * a
            gate, standard = self.gate.fc, self.gate.norm
            gate_weight = gate.weight / torch.sqrt(standard.running_var + standard.eps)[None, :]
            gate_bias = gate.bias - gate_weight @ standard.running_mean
            self._folded = (area, (gate_weight / area).detach().clone(),
                            gate_bias.detach().clone(), weight.detach().clone(),
                            bias.detach().clone())
        return self._folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = self._inputs()
        if self.training:
            scores = self.gate(x)
        else:
            _, gate_weight, gate_bias, weight, bias = self._fold(x.shape[2] * x.shape[3])
            scores = call_kernel(gate_scores, x.sum((2, 3)), gate_weight, gate_bias, inputs)
        index = scores.topk(self.keep, 1).indices
        if self.training or self.full:
            self.__dict__["compact"] = False  # set on every call: skip nn.Module's __setattr__
            hard = torch.zeros_like(scores).scatter(1, index, 1.0)
            # The value is the 0/1 mask; the scores get the mask's gradient, scaled down.
            mask = hard + GATE_GRADIENT * (scores - scores.detach())
            out = super().forward(x)
            if self._norm is None:
                return out * mask[:, :, None, None]
            # For the BatchNorm, which takes it: a copy of the model must not hold a graph.
            self.__dict__["mask"] = mask
            return out
        self.__dict__["compact"] = True
        self.__dict__["index"] = index
        return call_kernel(producer_batch, x, index, weight, bias, inputs, *self.geometry)


class GatedBatchNorm2d(nn.BatchNorm2d):
    """The producer's BatchNorm: applies the gate's mask; folded into the producer at inference."""

    def _setup(self, source: GatedConv2d) -> None:
        object.__setattr__(self, "_source", source)

    def train(self, mode: bool = True) -> GatedBatchNorm2d:
        self._source._folded = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._source._folded = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._source.compact:
            return x
        source = self._source
        mask, source.__dict__["mask"] = source.mask, None
        return super().forward(x) * mask[:, :, None, None]


class GatedInputConv2d(_Consumes, nn.Conv2d):
    """The consumer: in inference, convolves only the input channels its producer kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = self._inputs()
        if inputs is None:
            return super().forward(x)
        return call_kernel(consumer_batch, x, self.weight, self.bias, inputs, *self.geometry)


def is_gated(model: nn.Module) -> bool:
    """Whether `model` has dynamically gated layers."""
    return any(isinstance(m, GatedConv2d) for m in model.modules())


def gated_macs(model: nn.Module, example_input: torch.Tensor) -> float:
    """Multiply-accumulates of one inference pass through the gated convolutions and their
    gates (pooling and scoring).

    Counters that know only standard layer types miss these. The count holds for every input:
    `k` is fixed per layer, only which channels run changes.
    """
    total = [0.0]

    def count(m: nn.Conv2d, args: tuple, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        arriving = args[0].shape[1]
        total[0] += out[0].numel() * (arriving * kh * kw + (m.bias is not None))
        if isinstance(m, GatedConv2d):
            total[0] += args[0][0].numel() + arriving * m.out_channels + out[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (GatedConv2d, GatedInputConv2d))]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(example_input[:1])
    finally:
        for h in hooks:
            h.remove()
        model.train(training)
    return total[0]


def gate_chain(producer: nn.Conv2d, norm: nn.BatchNorm2d | None, consumer: nn.Conv2d,
               keep: int) -> GatedConv2d:
    """Turn a producer/BatchNorm/consumer chain into its gated version, in place.

    Either end may belong to another gated chain too: a consumer that gates its own output
    stays a GatedConv2d and learns its source; a producer that consumes keeps its source.
    """
    l1 = producer.weight.detach().abs().flatten(1).sum(1)
    prior = torch.argsort(torch.argsort(l1, stable=True)).float() / len(l1)
    gate = ChannelGate(producer.in_channels, producer.out_channels, prior).to(producer.weight)
    producer.__class__ = GatedConv2d
    producer._setup(gate, keep, norm)
    gate.train(producer.training)
    if norm is not None:
        norm.__class__ = GatedBatchNorm2d
        norm._setup(producer)
    if type(consumer) is nn.Conv2d:
        consumer.__class__ = GatedInputConv2d
    consumer._consume(producer)
    return producer
