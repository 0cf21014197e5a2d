"""GlyphTower: the bundled tiny VLM's vision encoder, a hybrid conv + transformer tower.

A convolutional stem (as ConvLLaVA and FastVLM use) keeps small text legible at a low input
resolution, where a from-scratch ViT learned to read too slowly on a CPU; transformer layers
on top give every cell a view of the whole object it sits on. It is registered with
transformers' Auto classes, so `LlavaForConditionalGeneration` builds and loads it like any
other tower and generation, multi-image prompts and attention maps work unchanged.

The tower knows nothing about questions: pixels in, one feature per grid cell out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

MODEL_TYPE = 'colvlm_glyph_tower'


class GlyphTowerConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, image_size: int = 128, patch_size: int = 16, num_channels: int = 3,
                 stem_channels: tuple[int, ...] = (16, 32, 64), stem_layers: int = 1,
                 hidden_size: int = 128, num_hidden_layers: int = 2,
                 num_attention_heads: int = 4, intermediate_size: int = 256,
                 layer_norm_eps: float = 1e-5, **kwargs) -> None:
        stem_channels = tuple(int(c) for c in stem_channels)
        # Each stem channel count is one stride-2 stage; the merge halves once more.
        if image_size % patch_size or patch_size != 2 ** (len(stem_channels) + 1):
            raise ValueError(f'patch_size must be 2 ** (len(stem_channels) + 1) and divide '
                             f'image_size, got patch_size={patch_size}, stem_channels='
                             f'{stem_channels}, image_size={image_size}')
        if hidden_size % num_attention_heads:
            raise ValueError(f'hidden_size ({hidden_size}) must be divisible by '
                             f'num_attention_heads ({num_attention_heads})')
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.num_channels = int(num_channels)
        self.stem_channels = list(stem_channels)
        self.stem_layers = int(stem_layers)
        self.hidden_size = int(hidden_size)
        self.num_hidden_layers = int(num_hidden_layers)
        self.num_attention_heads = int(num_attention_heads)
        self.intermediate_size = int(intermediate_size)
        self.layer_norm_eps = float(layer_norm_eps)
        super().__init__(**kwargs)

    @property
    def grid_size(self) -> int:
        """Cells per side of the output grid."""
        return self.image_size // self.patch_size


@dataclass
class GlyphTowerOutput(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None  # (B, cells, hidden)
    pooler_output: torch.FloatTensor | None = None  # (B, hidden), mean over cells
    hidden_states: tuple[torch.FloatTensor, ...] | None = None  # each (B, cells, hidden)
    attentions: tuple[torch.FloatTensor, ...] | None = None


def _conv(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1),
                         nn.GroupNorm(1, out_channels), nn.GELU())


class _EncoderLayer(nn.Module):
    """Pre-norm transformer layer over the grid cells."""

    def __init__(self, config: GlyphTowerConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.norm1 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.attention = nn.MultiheadAttention(width, config.num_attention_heads,
                                               batch_first=True)
        self.norm2 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(width, config.intermediate_size), nn.GELU(),
                                 nn.Linear(config.intermediate_size, width))

    def forward(self, x: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm1(x)
        y, weights = self.attention(y, y, y, need_weights=need_weights,
                                    average_attn_weights=False)
        x = x + y
        return x + self.mlp(self.norm2(x)), weights


class GlyphTowerModel(PreTrainedModel):
    config_class = GlyphTowerConfig
    base_model_prefix = 'glyph_tower'
    main_input_name = 'pixel_values'
    # nn.MultiheadAttention runs through scaled_dot_product_attention unless weights are asked
    # for, so every implementation LLaVA may request (eager for attention maps) is served.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config: GlyphTowerConfig) -> None:
        super().__init__(config)
        channels = [config.num_channels, *config.stem_channels]
        stages = []
        for k in range(len(config.stem_channels)):
            stages.append(_conv(channels[k], channels[k + 1], 2))
            stages += [_conv(channels[k + 1], channels[k + 1], 1)
                       for _ in range(config.stem_layers)]
        self.stem = nn.Sequential(*stages)
        self.merge = nn.Conv2d(channels[-1], config.hidden_size, 2, 2)  # 2x2 cells -> 1
        cells = config.grid_size ** 2
        self.position_embedding = nn.Parameter(torch.zeros(1, cells, config.hidden_size))
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, GlyphTowerModel):
            nn.init.trunc_normal_(module.position_embedding, std=0.02)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> GlyphTowerOutput | tuple:
        """pixel_values (B, 3, S, S) float, normalised; S = config.image_size."""
        size = self.config.image_size
        if pixel_values.shape[-2:] != (size, size):
            raise ValueError(f'GlyphTower expects {size}x{size} pixels, got '
                             f'{tuple(pixel_values.shape[-2:])}')
        features = self.merge(self.stem(pixel_values.to(self.merge.weight.dtype)))
        x = features.flatten(2).transpose(1, 2) + self.position_embedding  # (B, cells, hidden)
        hidden_states, attentions = [x], []
        for layer in self.layers:
            x, weights = layer(x, need_weights=bool(output_attentions))
            hidden_states.append(x)
            attentions.append(weights)
        x = self.post_layernorm(x)
        hidden_states[-1] = x  # the last entry is the normalised output, as in CLIP
        output = GlyphTowerOutput(
            last_hidden_state=x, pooler_output=x.mean(dim=1),
            hidden_states=tuple(hidden_states),
            attentions=tuple(attentions) if output_attentions else None)
        return output if return_dict is not False else output.to_tuple()


AutoConfig.register(MODEL_TYPE, GlyphTowerConfig, exist_ok=True)
AutoModel.register(GlyphTowerConfig, GlyphTowerModel, exist_ok=True)
