"""Widen a trained GlyphTower's convolutional stem without changing what it computes.

Net2WiderNet (Chen, Goodfellow and Shlens, "Net2Net: Accelerating Learning via Knowledge
Transfer", ICLR 2016): every stem channel is copied `factor` times and the next layer's weights
on the copies are divided by `factor`, so the wider tower gives the same features as the narrow
one. The stem normalises with GroupNorm(1, C), whose mean and variance over a tensor of equal
copies are those of the original, so the copy is exact. `noise` then splits each group of
copies apart: the incoming weights get a small perturbation and the outgoing shares get +e and
-e, so training can make the copies differ.

Contract: `widen_stem(source, target, noise, generator)` copies `source`'s weights into
`target`, a GlyphTowerModel whose stem channels are whole multiples of `source`'s and whose
other sizes are equal; ValueError naming the mismatch otherwise. `load_except(target, state,
skip)` loads every weight of `state` whose name `skip` does not take and insists that they
are all of `target`'s others.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from colvlm_models.glyph_tower import GlyphTowerModel


def _factors(source: GlyphTowerModel, target: GlyphTowerModel) -> list[int]:
    old, new = source.config, target.config
    same = ('image_size', 'patch_size', 'num_channels', 'stem_layers', 'hidden_size',
            'num_hidden_layers', 'num_attention_heads', 'intermediate_size')
    for name in same:
        if getattr(old, name) != getattr(new, name):
            raise ValueError(f'widen_stem: {name} differs ({getattr(old, name)} -> '
                             f'{getattr(new, name)}); only the stem channels may change')
    if (len(old.stem_channels) != len(new.stem_channels)
            or any(b % a for a, b in zip(old.stem_channels, new.stem_channels, strict=True))):
        raise ValueError(f'widen_stem: stem channels {list(new.stem_channels)} are not whole '
                         f'multiples of {list(old.stem_channels)}')
    return [b // a for a, b in zip(old.stem_channels, new.stem_channels, strict=True)]


def load_except(target: nn.Module, state: dict, skip: Callable[[str], bool]) -> None:
    """Load the weights of `state` that `skip` does not take; every other weight of `target`
    must be among them and none left over, else ValueError naming the first ones."""
    result = target.load_state_dict({k: v for k, v in state.items() if not skip(k)},
                                    strict=False)
    left = [k for k in result.missing_keys if not skip(k)]
    if left or result.unexpected_keys:
        raise ValueError(f'weights not matched: {left or result.unexpected_keys}')


def _split(weight: torch.Tensor, factor: int, noise: float,
           generator: torch.Generator) -> torch.Tensor:
    """Input channels (dim 1) copied `factor` times, each copy's share 1/factor, the shares
    perturbed by a zero-sum noise so the copies' sum stays the original weight."""
    shares = weight.repeat_interleave(factor, dim=1) / factor
    if factor > 1 and noise > 0:
        shape = (weight.shape[0], weight.shape[1], factor, *weight.shape[2:])
        e = torch.randn(shape, generator=generator) * noise * weight.std()
        e = e - e.mean(dim=2, keepdim=True)  # each group of copies sums to zero
        shares = shares + e.flatten(1, 2)
    return shares


def widen_stem(source: GlyphTowerModel, target: GlyphTowerModel, noise: float = 0.01,
               generator: torch.Generator | None = None) -> None:
    """Copy `source`'s weights into the wider `target` (see the module's docstring)."""
    factors = _factors(source, target)
    generator = generator or torch.Generator().manual_seed(0)
    convs_old = [m for m in source.stem if isinstance(m, nn.Sequential)]
    convs_new = [m for m in target.stem if isinstance(m, nn.Sequential)]
    per_stage = 1 + source.config.stem_layers
    with torch.no_grad():
        for index, (old, new) in enumerate(zip(convs_old, convs_new, strict=True)):
            out_factor = factors[index // per_stage]
            in_factor = 1 if index == 0 else factors[(index - 1) // per_stage]
            conv_old, norm_old = old[0], old[1]
            conv_new, norm_new = new[0], new[1]
            weight = _split(conv_old.weight, in_factor, noise, generator)
            weight = weight.repeat_interleave(out_factor, dim=0)
            if out_factor > 1 and noise > 0:  # copies of one channel start apart
                weight = weight + torch.randn(weight.shape, generator=generator) \
                    * noise * conv_old.weight.std()
            conv_new.weight.copy_(weight)
            conv_new.bias.copy_(conv_old.bias.repeat_interleave(out_factor))
            norm_new.weight.copy_(norm_old.weight.repeat_interleave(out_factor))
            norm_new.bias.copy_(norm_old.bias.repeat_interleave(out_factor))
        target.merge.weight.copy_(_split(source.merge.weight, factors[-1], noise, generator))
        target.merge.bias.copy_(source.merge.bias)
        load_except(target, source.state_dict(), lambda k: k.startswith(('stem.', 'merge.')))
