"""Fit the token-layer codec of a model and save it next to the model.

Calibration tokens come from Glyph-VQA scenes rendered as the edge renders its global frames
(the model's encoder input, padded), drawn with the calibration seed 777 (the split the gate
threshold is calibrated on; evaluation uses 20261123, the demo 424242/424243, training its own
streams), so the basis never sees an evaluation image. The model is only run, never changed.

    python -m tools.fit_token_codec                     # bundled model, both splits
    python -m tools.fit_token_codec --model PATH --split tower --images 300
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

from colvlm_bench.glyphvqa.scene import render_scene
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_msgs.token_codec import SPLITS, TokenCodec, artifact_name

CALIBRATION_SEED = 777
# The default plan (tools.bench_layers measures it): a few strong directions first, so
# layer 0 is ~1/10 of a 128 px JPEG global frame; later layers are wider and coarser.
DEFAULT_COEFFICIENTS = '4,12,48,rest'
DEFAULT_BITS = '8,6,5,4'


def calibration_tokens(backend, split: str, images: int, seed: int) -> np.ndarray:
    """(images * N, D) float32 visual tokens of `images` scenes of the seed."""
    width, height = backend.image_size
    encoder = GlobalEncoder(GlobalEncoderConfig(width=width, height=height))
    tokens = []
    for index in range(images):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        pixels, _ = encoder.render(render_scene(rng).image)  # (h, w, 3) uint8 BGR
        tokens.append(backend.visual_tokens(pixels, split))
    return np.concatenate(tokens)


def layer_plan(coefficients: str, bits: str, dim: int) -> tuple[list[int], list[int]]:
    """'4,12,48,rest' and '8,6,5,4' for a token dim -> ([4, 12, 48, dim - 64], [8, 6, 5, 4])."""
    parts = [p.strip() for p in coefficients.split(',')]
    counts = [int(p) for p in parts if p != 'rest']
    if parts.count('rest') > 1 or (parts.count('rest') and parts[-1] != 'rest'):
        raise ValueError(f"--coefficients may end with one 'rest', got {coefficients!r}")
    if parts[-1] == 'rest':
        counts.append(dim - sum(counts))
    widths = [int(b) for b in bits.split(',')]
    if sum(counts) != dim or min(counts) < 1:
        raise ValueError(f'--coefficients {coefficients!r} must cover the token dim {dim}')
    return counts, widths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='bundled', help="'bundled' or a local model folder")
    parser.add_argument('--split', default='both', choices=(*SPLITS, 'both'))
    parser.add_argument('--images', type=int, default=120, help='calibration scenes')
    parser.add_argument('--seed', type=int, default=CALIBRATION_SEED)
    parser.add_argument('--coefficients', default=DEFAULT_COEFFICIENTS,
                        help="coefficients per token of each layer; 'rest' = the remainder")
    parser.add_argument('--bits', default=DEFAULT_BITS, help='bits per coefficient, per layer')
    parser.add_argument('--out', help='folder for token_codec_<split>.npz (default: the model)')
    args = parser.parse_args(argv)

    from colvlm_models.vlm import TransformersVlm, resolve_model

    backend = TransformersVlm(args.model, attention=False, progress=False)
    out = Path(args.out or resolve_model(args.model))
    if not out.is_dir():
        print(f'fit_token_codec: {out} is not a folder; pass --out', file=sys.stderr)
        return 2
    for split in (SPLITS if args.split == 'both' else (args.split,)):
        tokens = calibration_tokens(backend, split, args.images, args.seed)
        counts, bits = layer_plan(args.coefficients, args.bits, tokens.shape[1])
        codec = TokenCodec.fit(tokens, counts, bits, split=split, info={
            'model': backend.model_id, 'calibration_seed': args.seed,
            'calibration_images': args.images, 'calibration_tokens': int(tokens.shape[0])})
        path = codec.save(out / artifact_name(split))
        print(f'{path}: {codec.codec_id}, layers {counts} coefficients x {bits} bits, '
              f'variance by layer {codec.info["explained_variance_by_layer"]}, '
              f'{path.stat().st_size} B')
    return 0


if __name__ == '__main__':
    sys.exit(main())
