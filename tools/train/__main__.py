"""Train colvlm's bundled tiny LLaVA on Glyph-VQA in stages (see the package's docstring).

    python -m tools.train --out models/colvlm-tiny-llava --work out/train [--smoke]

`--smoke` runs a few steps of each stage on a small pool, for tests; `--init-from` starts from
an exported model's weights; `--style` picks the scenes' look; a run in an existing `--work`
resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .data import STREAMS, STYLES
from .prompts import FORMATS, KIND_WEIGHTS

STAGES = tuple(STREAMS)  # stage names


def _weights(key_type: type, allowed: set):
    """An argparse type: 'a=0.5,b=0.5' -> {a: 0.5, b: 0.5} for keys in `allowed`."""
    def parse(text: str):
        weights = {}
        for part in text.split(','):
            key, _, value = part.partition('=')
            try:
                key, weight = key_type(key.strip()), float(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f'{part!r} is not KEY=WEIGHT') from None
            if key not in allowed or weight < 0:
                raise argparse.ArgumentTypeError(f'{part!r}: keys are {sorted(allowed)}, '
                                                 'weights >= 0')
            weights[key] = weight
        if not sum(weights.values()) > 0:
            raise argparse.ArgumentTypeError(f'{text!r}: the weights sum to 0')
        return weights if key_type is str else tuple(weights.items())
    return parse



def _share(text: str) -> float:
    """An argparse type: a share in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'must be a share in [0, 1], got {text!r}')
    return value


def _channels(text: str) -> tuple[int, ...]:
    """An argparse type: '32,64,128' -> (32, 64, 128), three counts >= 1."""
    parts = text.split(',')
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f'{text!r} is not three channel counts C1,C2,C3')
    return tuple(int(p) for p in parts)


def _stage_step(text: str) -> tuple[str, int]:
    """An argparse type: 'joint:1000' -> ('joint', 1000)."""
    name, _, step = text.partition(':')
    if name not in STAGES or not step.isdigit() or int(step) < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not STAGE:STEP with STAGE one of '
                                         f'{STAGES} and STEP >= 1')
    return name, int(step)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default='models/colvlm-tiny-llava', help='export folder')
    parser.add_argument('--work', default='out/train-tiny-vlm',
                        help='checkpoint and log folder; a run there resumes')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads; 0 = default')
    parser.add_argument('--seed', type=int, default=1234)
    parser.add_argument('--init-from', default=None, metavar='MODEL_DIR',
                        help="start from an exported model's weights (when --work holds no "
                             'checkpoint yet)')
    parser.add_argument('--stem-channels', type=_channels, default=(16, 32, 64),
                        metavar='C1,C2,C3',
                        help="the tower stem's channels per stage; wider than --init-from's "
                             'stem (whole multiples) copies it in, same function (Net2Net)')


def _add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--read-steps', type=int, default=0,
                        help='steps of the reading stage before the tower stage')
    parser.add_argument('--read-lr', type=float, default=2e-3)
    parser.add_argument('--page-share', type=float, default=1.0,
                        help="share of text pages among the read stage's views, the rest "
                             'scene crops around signs (0.5 read more slowly than 1.0)')
    parser.add_argument('--tower-steps', type=int, default=1500)
    parser.add_argument('--align-steps', type=int, default=600)
    parser.add_argument('--bind-steps', type=int, default=0,
                        help='steps of the binding stage (1-image, tower frozen) before joint')
    parser.add_argument('--joint-steps', type=int, default=3000)
    parser.add_argument('--tower-lr', type=float, default=2e-3)
    parser.add_argument('--align-lr', type=float, default=1e-3)
    parser.add_argument('--bind-lr', type=float, default=5e-4)
    parser.add_argument('--joint-lr', type=float, default=6e-4)
    parser.add_argument('--warmup', type=int, default=100)


def _add_loss_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--batch', type=int, default=32, help='1-image prompts per step')
    parser.add_argument('--tower-batch', type=int, default=64, help='views per tower step')
    parser.add_argument('--cell-weight', type=float, default=0.3)
    parser.add_argument('--att-weight', type=float, default=0.0,
                        help='weight of the attention loss in the VQA stages: the last prompt '
                             "position's attention to the global image, heads averaged, "
                             "against the question's evidence box (0 = off)")
    parser.add_argument('--att-layer', type=int, default=-1,
                        help="decoder layer of the attention loss; -1 = ViCrop's default")
    parser.add_argument('--joint-tower-scale', type=float, default=0.3,
                        help="the tower's learning rate in the joint stage, as a share of "
                             "--joint-lr; 0 freezes it (and drops the per-cell losses)")
    parser.add_argument('--text-weight', type=float, default=2.0,
                        help='weight of the text slots among the per-cell losses')
    parser.add_argument('--color-weight', type=float, default=1.0,
                        help='weight of the colour head among the per-cell losses')
    parser.add_argument('--tower-global-share', type=_share, default=0.3,
                        help="share of global frames among the tower stage's views (the rest "
                             'crops around signs and 2x2 tiles, 11 : 3)')
    parser.add_argument('--head-warmup', type=int, default=0, metavar='N',
                        help="the tower stage's first N steps train only the cell heads, the "
                             'tower frozen, so fresh heads do not push noise into trained '
                             'features (linear probing, then fine-tuning)')
    parser.add_argument('--tower-min-scale', type=float, default=0.5,
                        help='smallest tower-stage crop side, in encoder sizes')


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--style', choices=STYLES, default='clean',
                        help="the scenes' look: the renderer's clean one, camera-like "
                             'variation, or mix (every other scene camera-like)')
    parser.add_argument('--truetype', type=float, default=0.0, metavar='SHARE',
                        help='camera-like scenes: the share of signs lettered in a TrueType '
                             'face instead of a Hershey font (default: 0)')
    parser.add_argument('--typefaces', default='dejavu', metavar='LIST',
                        help='the TrueType faces for --truetype, comma-separated: families '
                             'of colvlm_bench.glyphvqa.lettering.TYPEFACES, .ttf/.otf files or '
                             'folders of them (default: dejavu)')
    parser.add_argument('--text-height', default=None, metavar='LOW,HIGH',
                        help="camera-like scenes: the signs' ink height range in px of the "
                             'original (default: 14,32)')
    parser.add_argument('--factors', default=None, metavar='LIST',
                        help='camera-like scenes: the camera factors on, as the dataset '
                             "command's --factors (default: all but pose; 'all' adds pose, "
                             'which turns squares and triangles)')
    parser.add_argument('--pose-share', type=float, default=None, metavar='SHARE',
                        help='with pose among --factors: the share of camera-like scenes whose '
                             'squares and triangles are turned, the rest upright (default: 1)')
    parser.add_argument('--pool', type=int, default=256, help='scenes kept for reuse')
    parser.add_argument('--pool-fill', type=int, default=64, help='scenes before step 1')
    parser.add_argument('--refresh', type=int, default=4, help='new scenes per step')
    parser.add_argument('--kinds', type=_weights(str, set(KIND_WEIGHTS)), default=None,
                        metavar='KIND=W,...', help='question kinds and their weights in the '
                        'align and joint stages (default: ' + ','.join(
                            f'{k}={w:g}' for k, w in KIND_WEIGHTS.items()) + ')')
    parser.add_argument('--bind-kinds', type=_weights(str, set(KIND_WEIGHTS)),
                        default={'color': 0.5, 'presence': 0.5}, metavar='KIND=W,...',
                        help='question kinds of the bind stage (default: color=0.5,presence=0.5)')
    parser.add_argument('--joint-formats', type=_weights(int, {1, 2, 5}), default=None,
                        metavar='N=W,...', help='images per prompt and weights in the joint '
                        'stage (default: ' + ','.join(
                            f'{n}={w:g}' for n, w in FORMATS['joint']) + ')')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m tools.train',
                                     description=__doc__.splitlines()[0])
    for add in (_add_run_arguments, _add_stage_arguments, _add_loss_arguments,
                _add_data_arguments):
        add(parser)
    parser.add_argument('--log-every', type=int, default=20)
    parser.add_argument('--save-every', type=int, default=100)
    parser.add_argument('--stop-at', type=_stage_step, default=None, metavar='STAGE:STEP',
                        help='save a checkpoint after that step of that stage and stop without '
                             'exporting; a later run in the same --work carries on from it')
    parser.add_argument('--export-only', action='store_true',
                        help="export the work folder's latest checkpoint and stop")
    parser.add_argument('--smoke', action='store_true',
                        help='a few steps of each stage on a small pool (for tests)')
    args = parser.parse_args(argv)
    from .data import camera_style
    try:
        camera_style(args)  # a bad camera flag (--truetype .. --pose-share) fails here
    except ValueError as error:
        parser.error(str(error))
    if args.smoke:
        args.read_steps, args.tower_steps, args.align_steps, args.joint_steps = 2, 3, 3, 4
        args.bind_steps = 2
        args.batch, args.tower_batch, args.pool, args.pool_fill, args.refresh = 4, 8, 8, 4, 1
        args.warmup, args.log_every, args.save_every = 2, 1, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from .trainer import Trainer  # torch and transformers load after argument checks

    Trainer(args).run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
