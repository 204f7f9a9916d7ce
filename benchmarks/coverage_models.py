"""The models that benchmarks/model_coverage.py runs: the built-in zoo, small randomly
initialised Hugging Face `transformers` models (built from a config, never downloaded), and
torchvision's and timm's classifiers where those libraries import.

Each entry is a `Spec`; `Spec.build()` returns (model, example input). `attention` and
`residual` say what the architecture has, so that a missing attention or block group shows up
as a gap rather than as nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

TEXT = dict(vocab_size=128, max_position_embeddings=64)
BATCH, LENGTH, VOCAB = 2, 16, 128
ATTENTION = "eager"  # the attention implementation asked of every transformers model


@dataclass(frozen=True)
class Spec:
    """One model of the list: `family` is zoo, transformers, torchvision or timm; `inputs`
    is "tensor" (input ids or pixels) or "dict" (input_ids and attention_mask)."""

    name: str
    family: str
    build: Callable[[], tuple[torch.nn.Module, Any]]
    attention: bool
    residual: bool
    inputs: str = "tensor"


def _zoo(name: str) -> Callable[[], tuple[torch.nn.Module, Any]]:
    def build() -> tuple[torch.nn.Module, Any]:
        from autoprune import specs
        from autoprune.cli import compose
        from autoprune.config import settings_from_dict
        from autoprune.models import build_model

        extra = ["task=language_model"] if name == "gpt" else []
        settings = settings_from_dict(compose("search", [f"model={name}", *extra]))
        return build_model(settings.model).eval(), specs.workload(settings).example()
    return build


def _text(dict_input: bool) -> Any:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (BATCH, LENGTH), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)} if dict_input else ids


def _hf(model_class: str, config_class: str, example: Callable[[], Any],
        **config: Any) -> Callable[[], tuple[torch.nn.Module, Any]]:
    def build() -> tuple[torch.nn.Module, Any]:
        import transformers

        cfg = getattr(transformers, config_class)(attn_implementation=ATTENTION, **config)
        model = getattr(transformers, model_class)(cfg)
        return model.eval(), example()
    return build


def _pixels(size: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))


def _library(module: str, factory: str, size: int) -> Callable[[], tuple[torch.nn.Module, Any]]:
    def build() -> tuple[torch.nn.Module, Any]:
        import importlib

        if module == "timm":
            model = importlib.import_module("timm").create_model(factory, pretrained=False)
        else:
            model = getattr(importlib.import_module("torchvision.models"), factory)(weights=None)
        return model.eval(), _pixels(size)()
    return build


ENCODER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, num_labels=3, **TEXT)
DECODER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, **TEXT)
GQA = dict(DECODER, num_key_value_heads=2)
VIT = dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
           num_attention_heads=4, intermediate_size=128, num_labels=10)
# initializer_range: at the default 0.02 the deep MobileNetV2 and MobileViT output ~1e-25 and 0,
# whatever the input, which makes output and ONNX checks vacuous.
HF = [  # name, model class, config class, input, attention, residual, config
    ("hf_bert", "BertForSequenceClassification", "BertConfig", "dict", True, True, ENCODER),
    ("hf_distilbert", "DistilBertForSequenceClassification", "DistilBertConfig", "dict", True,
     True, dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128, num_labels=3, **TEXT)),
    ("hf_roberta", "RobertaForSequenceClassification", "RobertaConfig", "dict", True, True,
     dict(ENCODER, max_position_embeddings=66, pad_token_id=1)),
    ("hf_gpt2", "GPT2LMHeadModel", "GPT2Config", "tensor", True, True,
     dict(n_embd=64, n_layer=2, n_head=4, n_positions=64, vocab_size=VOCAB,
          bos_token_id=0, eos_token_id=0)),
    ("hf_opt", "OPTForCausalLM", "OPTConfig", "tensor", True, True,
     dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
          word_embed_proj_dim=64, **TEXT)),
    ("hf_llama_gqa", "LlamaForCausalLM", "LlamaConfig", "tensor", True, True, GQA),
    ("hf_qwen2", "Qwen2ForCausalLM", "Qwen2Config", "tensor", True, True, GQA),
    ("hf_mistral", "MistralForCausalLM", "MistralConfig", "tensor", True, True, GQA),
    ("hf_phi", "PhiForCausalLM", "PhiConfig", "tensor", True, True, DECODER),
    ("hf_vit", "ViTForImageClassification", "ViTConfig", 32, True, True, VIT),
    ("hf_deit", "DeiTForImageClassification", "DeiTConfig", 32, True, True, VIT),
    ("hf_swin", "SwinForImageClassification", "SwinConfig", 32, True, True,
     dict(image_size=32, patch_size=4, embed_dim=32, depths=[2, 2], num_heads=[2, 4],
          window_size=4, num_labels=10)),
    ("hf_convnext", "ConvNextForImageClassification", "ConvNextConfig", 32, False, True,
     dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 2, 1], num_labels=10)),
    ("hf_resnet", "ResNetForImageClassification", "ResNetConfig", 32, False, True,
     dict(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
          layer_type="basic", num_labels=10)),
    ("hf_mobilenet_v2", "MobileNetV2ForImageClassification", "MobileNetV2Config", 32, False,
     True, dict(image_size=32, depth_multiplier=0.35, num_labels=10, initializer_range=0.2)),
    ("hf_mobilevit", "MobileViTForImageClassification", "MobileViTConfig", 64, True, True,
     dict(image_size=64, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 16, 24, 32, 48, 64,
          128], num_attention_heads=4, num_labels=10, initializer_range=0.3)),
    ("hf_segformer", "SegformerForImageClassification", "SegformerConfig", 64, True, True,
     dict(image_size=64, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 48, 64],
          num_attention_heads=[2, 2, 4, 4], decoder_hidden_size=64, num_labels=10)),
]
LIBRARIES = [  # name, module, factory, image size, attention, residual
    ("tv_resnet18", "torchvision", "resnet18", 64, False, True),
    ("tv_mobilenet_v3_small", "torchvision", "mobilenet_v3_small", 64, False, True),
    ("tv_vit_b_16", "torchvision", "vit_b_16", 224, True, True),
    ("tv_swin_t", "torchvision", "swin_t", 224, True, True),
    ("tv_shufflenet_v2_x1_0", "torchvision", "shufflenet_v2_x1_0", 64, False, False),
    ("tv_regnet_y_400mf", "torchvision", "regnet_y_400mf", 64, False, True),
    ("tv_convnext_tiny", "torchvision", "convnext_tiny", 64, False, True),
    ("tv_efficientnet_b0", "torchvision", "efficientnet_b0", 64, False, True),
    ("timm_deit_tiny_patch16_224", "timm", "deit_tiny_patch16_224", 224, True, True),
    ("timm_resnet18", "timm", "resnet18", 64, False, True),
    ("timm_convnext_atto", "timm", "convnext_atto", 64, False, True),
    ("timm_fastvit_t8", "timm", "fastvit_t8", 64, False, True),
    ("timm_mobilevit_xxs", "timm", "mobilevit_xxs", 64, True, True),
]
ZOO = [("mlp", False, False), ("vgg", False, False), ("resnet8", False, True),
       ("resnet", False, True), ("mobilenet", False, True), ("vit", True, True),
       ("gpt", True, True)]


def _hf_example(inputs: str | int) -> Callable[[], Any]:
    return _pixels(inputs) if isinstance(inputs, int) else (lambda: _text(inputs == "dict"))


MODELS: dict[str, Spec] = {
    **{n: Spec(n, "zoo", _zoo(n), a, r) for n, a, r in ZOO},
    **{n: Spec(n, "transformers", _hf(m, c, _hf_example(i), **kw), a, r,
               "dict" if i == "dict" else "tensor") for n, m, c, i, a, r, kw in HF},
    **{n: Spec(n, module, _library(module, f, size), a, r) for n, module, f, size, a, r
       in LIBRARIES},
}


def import_error(family: str) -> str | None:
    """Why `family`'s library does not import here (one line), or None when it does."""
    module = {"torchvision": "torchvision.models", "timm": "timm"}.get(family)
    if module is None:
        return None
    try:
        __import__(module)
    except Exception as exc:  # any failure to import means the family is skipped
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return None
