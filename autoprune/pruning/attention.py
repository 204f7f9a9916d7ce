"""Attention modules whose heads can be removed whole, and the operation that removes them.

An attention group is a *scope*: the smallest module holding the query/key/value projections
and the output projection. Recognised, by structure rather than class name:

- `nn.MultiheadAttention` (same embedding size for query, key and value): replaced, on
  pruning, by `HeadPrunedAttention` (see `mha.py`).
- Attention written with projections (`nn.Linear`, or the transposed `Conv1D` of GPT-2): a
  module with an integer head count (`num_heads`, `num_attention_heads`, `n_heads`,
  `n_head`), query/key/value projections (fused `qkv`/`c_attn`/`qkv_proj`/`Wqkv`, laid out
  [q | k | v], or separate `q`/`k`/`v`, `q_proj`..., `query`..., `q_lin`...) and an output
  projection (`proj`, `out_proj`, `o_proj`, `out_lin`, `c_proj`, `dense`) of its own or, as
  in BERT and ViT, in a sibling under their common parent (`attention.output.dense`).
  The head size comes from `head_dim`/`attention_head_size`/`head_size`/`dim_per_head`,
  else from the query width; grouped-query attention (fewer key/value heads) is read from
  the key projection's width. A key/value head goes with its query heads: the units removed
  are the key/value heads (the query heads without grouped-query attention).

Removing units slices the projections' rows, the output projection's columns and any other
parameter of the scope with one entry per head (a relative position bias table), then sets the
scope's head-count and width attributes (`num_heads`, `num_key_value_heads`, `all_head_size`,
`split_size`, ...) that held the old values, so the library's own forward keeps working.
`find_attention` keeps only the scopes where removing a unit gives exactly what zeroing its
output columns gives, on the example's own inputs: layouts this reading gets wrong (heads
interleaved another way, a per-head bias table) are left out rather than pruned wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autoprune.pruning.mha import HeadPrunedAttention, as_head_pruned

HEAD_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head")
KV_ATTRS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads")
DIM_ATTRS = ("head_dim", "attention_head_size", "head_size", "dim_per_head")
WIDTH_ATTRS = ("all_head_size", "split_size", "inner_dim", "dim")
FUSED = ("qkv", "c_attn", "qkv_proj", "Wqkv")
SEPARATE = (("q", "k", "v"), ("q_proj", "k_proj", "v_proj"), ("query", "key", "value"),
            ("q_lin", "k_lin", "v_lin"))
OUTPUT = ("proj", "out_proj", "o_proj", "out_lin", "c_proj", "dense")


@dataclass(frozen=True)
class AttentionLayout:
    """Where a scope keeps its projections (names relative to the scope) and its heads."""

    projections: tuple[str, ...]  # one fused [q | k | v] projection, or q, k and v
    output: str
    heads: int  # query heads
    head_dim: int
    kv_heads: int  # key/value heads: the units removed whole (= heads without GQA)
    replaced: bool = False  # an nn.MultiheadAttention, replaced when pruned

    @property
    def units(self) -> int:
        return self.kv_heads

    @property
    def group(self) -> int:
        """Query heads per unit."""
        return self.heads // self.kv_heads


def is_projection(module: nn.Module) -> bool:
    """An nn.Linear, or a transformers-style Conv1D (weight stored [in, out])."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def is_conv1d(module: nn.Module) -> bool:
    """A transformers-style Conv1D: a Linear whose weight is stored [in, out]."""
    weight = getattr(module, "weight", None)
    return (type(module).__name__ == "Conv1D" and isinstance(getattr(module, "nf", None), int)
            and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and weight.shape[1] == module.nf)


def _width(module: nn.Module, out: bool = True) -> int:
    """Output (or input) features of a projection."""
    weight = module.weight
    if is_conv1d(module):
        return weight.shape[1] if out else weight.shape[0]
    return weight.shape[0] if out else weight.shape[1]


def _int_attr(module: object, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _qkv(holder: nn.Module) -> tuple[tuple[str, ...], int, int, int] | None:
    """(projection names, query heads, head size, key/value heads) of `holder`, or None.
    The head count is the holder's attribute; without one (LLaMA and its kin keep only
    `head_dim` and `num_key_value_groups`) it follows from the widths, or the model config."""
    children = dict(holder.named_children())
    heads, dim = _int_attr(holder, HEAD_ATTRS), _int_attr(holder, DIM_ATTRS)
    group = _int_attr(holder, ("num_key_value_groups",))
    config = getattr(holder, "config", None)
    for name in FUSED:
        if is_projection(children.get(name, nn.Identity())):
            total = _width(children[name])
            if not heads and not (dim and group):
                heads = _int_attr(config, HEAD_ATTRS)
                if not heads:
                    return None
            if not heads:  # [q | k | v] = (group + 2) key/value heads' worth per unit
                kv = total // (dim * (group + 2))
                return ((name,), group * kv, dim, kv) if kv * dim * (group + 2) == total \
                    else None
            dim = dim or total // (3 * heads)
            kv2 = total // dim - heads if dim and total % dim == 0 else -1
            if kv2 > 0 and kv2 % 2 == 0 and heads % (kv2 // 2) == 0:
                return (name,), heads, dim, kv2 // 2
            return None
    for names in SEPARATE:
        if all(is_projection(children.get(n, nn.Identity())) for n in names):
            q, k, v = (_width(children[n]) for n in names)
            heads = heads or (q // dim if dim else _int_attr(config, HEAD_ATTRS))
            if not heads:
                return None
            dim = dim or q // heads
            if q != heads * dim or k != v or k % dim or heads % (k // dim):
                return None
            return names, heads, dim, k // dim
    return None


def _output_of(scope: nn.Module, skip: str, width: int) -> str | None:
    """The one output projection in `scope` (outside its child `skip`) reading `width`."""
    found = [name for name, m in scope.named_modules()
             if name and name.rpartition(".")[2] in OUTPUT and is_projection(m)
             and _width(m, out=False) == width
             and not (skip and (name == skip or name.startswith(skip + ".")))]
    return found[0] if len(found) == 1 else None


def attention_layout(scope: nn.Module) -> AttentionLayout | None:
    """The layout of `scope` as an attention scope, or None when it is not one."""
    if isinstance(scope, nn.MultiheadAttention):
        if not scope._qkv_same_embed_dim or scope.in_proj_weight is None:
            return None
        return AttentionLayout(("in_proj",), "out_proj", scope.num_heads, scope.head_dim,
                               scope.num_heads, replaced=True)
    if isinstance(scope, HeadPrunedAttention):
        return AttentionLayout(("q", "k", "v"), "out_proj", scope.num_heads, scope.head_dim,
                               scope.num_heads)
    for prefix, holder in (("", scope), *scope.named_children()):
        qkv = _qkv(holder)
        if qkv is None:
            continue
        names, heads, dim, kv = qkv
        output = _output_of(scope, prefix, heads * dim)
        if output is None:
            continue
        full = tuple(f"{prefix}.{n}" if prefix else n for n in names)
        return AttentionLayout(full, output, heads, dim, kv)
    return None


def projection_layers(name: str, layout: AttentionLayout) -> list[str]:
    """Module names of the query/key/value projections (not the output projection)."""
    if layout.replaced:
        return []
    return [f"{name}.{n}" if name else n for n in layout.projections]


def unit_channels(layout: AttentionLayout, units: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Query channels and key/value channels of `units`."""
    dim, group = layout.head_dim, layout.group
    q = [(u * group + j) * dim + i for u in units for j in range(group) for i in range(dim)]
    kv = [u * dim + i for u in units for i in range(dim)]
    return torch.tensor(q, dtype=torch.long), torch.tensor(kv, dtype=torch.long)


def _rows(module: nn.Module) -> torch.Tensor:
    """Weight as [out, in], detached."""
    weight = module.weight.detach()
    return weight.t() if is_conv1d(module) else weight


def head_scores(scope: nn.Module, layout: AttentionLayout) -> torch.Tensor:
    """Per unit: L1 magnitude of its query/key/value rows and output-projection columns."""
    if layout.replaced:
        scope = as_head_pruned(scope)
        layout = attention_layout(scope)
    score = torch.zeros(layout.units, dtype=torch.float64)
    for unit in range(layout.units):
        q, kv = unit_channels(layout, [unit])
        for index, rows in _projection_rows(scope, layout, q, kv):
            score[unit] += float(_rows(scope.get_submodule(index))[rows].abs().sum())
        score[unit] += float(_rows(scope.get_submodule(layout.output))[:, q].abs().sum())
    return score


def _projection_rows(scope: nn.Module, layout: AttentionLayout, q: torch.Tensor,
                     kv: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    if len(layout.projections) == 3:
        return list(zip(layout.projections, (q, kv, kv), strict=True))
    width, kv_width = layout.heads * layout.head_dim, layout.kv_heads * layout.head_dim
    return [(layout.projections[0], torch.cat([q, kv + width, kv + width + kv_width]))]


def zero_inputs(module: nn.Module, index: torch.Tensor) -> None:
    """Zero the weights a projection applies to its inputs `index` (in place)."""
    with torch.no_grad():
        if is_conv1d(module):
            module.weight[index] = 0
        else:
            module.weight[:, index] = 0


def _keep_out(module: nn.Module, index: torch.Tensor) -> None:
    conv1d = is_conv1d(module)
    weight = module.weight.detach()
    module.weight = nn.Parameter((weight[:, index] if conv1d else weight[index]).clone())
    if module.bias is not None:
        module.bias = nn.Parameter(module.bias.detach()[index].clone())
    if conv1d:
        module.nf = len(index)
    else:
        module.out_features = len(index)


def _keep_in(module: nn.Module, index: torch.Tensor) -> None:
    conv1d = is_conv1d(module)
    weight = module.weight.detach()
    module.weight = nn.Parameter((weight[index] if conv1d else weight[:, index]).clone())
    if conv1d:
        if hasattr(module, "nx"):
            module.nx = len(index)
    else:
        module.in_features = len(index)


def _keep_per_head(scope: nn.Module, layout: AttentionLayout, heads: list[int]) -> None:
    """Slice the scope's other parameters that hold one entry per query head (a relative
    position bias table, say) along that dimension."""
    skip = {*layout.projections, layout.output}
    index = torch.tensor(heads, dtype=torch.long)
    for name, module in scope.named_modules():
        if name in skip:
            continue
        for pname, param in list(module.named_parameters(recurse=False)):
            dims = [d for d, size in enumerate(param.shape) if size == layout.heads]
            if len(dims) == 1 and param.dim() > 1:
                kept = param.detach().index_select(dims[0], index).clone()
                setattr(module, pname, nn.Parameter(kept, requires_grad=param.requires_grad))


def remove_heads(parent: nn.Module, name: str, keep: list[int]) -> None:
    """Keep only units `keep` (sorted key/value heads, each with its query heads) of the
    attention scope `parent.<name>`, head size unchanged."""
    scope = getattr(parent, name)
    layout = attention_layout(scope)
    if layout.replaced:
        scope = as_head_pruned(scope)
        setattr(parent, name, scope)
        layout = attention_layout(scope)
    q, kv = unit_channels(layout, keep)
    for projection, rows in _projection_rows(scope, layout, q, kv):
        _keep_out(scope.get_submodule(projection), rows)
    _keep_in(scope.get_submodule(layout.output), q)
    _keep_per_head(scope, layout, [u * layout.group + j for u in keep
                                   for j in range(layout.group)])
    heads, kv_heads = len(keep) * layout.group, len(keep)
    old = {**dict.fromkeys(HEAD_ATTRS, (layout.heads, heads)),
           **dict.fromkeys(KV_ATTRS, (layout.kv_heads, kv_heads)),
           **dict.fromkeys(WIDTH_ATTRS, (layout.heads * layout.head_dim, heads * layout.head_dim))}
    for module in scope.modules():
        for attr, (before, after) in old.items():
            if getattr(module, attr, None) == before and not isinstance(module, nn.Linear):
                setattr(module, attr, after)
