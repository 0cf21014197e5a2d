"""Run one Glyph-VQA question through every stage of a model and print what works.

Loads MODEL (a folder, 'bundled' or a cached hub id) as the server would, renders one Glyph-VQA
scene, encodes its global frame as the edge would, and runs the stages in turn: the first pass
with its answer-token scores (the gate), the attention it reads for ViCrop (which family, which
decoder layer, which grid over the frame, whether eager attention came back), the generic
prompt's map and the box (rel_att), the crop as a second image, and gradient-weighted attention
(grad_att); each with its latency. The `geometry` stage checks that the tokens read lie over
the frame as ViCrop assumes (colvlm_models/grid_probe.py): a marked cell changes its own most.
`--write-settings` writes colvlm.yaml beside the model (its gate threshold kept, the ViCrop
method and layer that worked).

Exit status: 0 when every stage worked, 1 when one failed (the report says which), 2 when the
model cannot be loaded or the command line is wrong (one line on stderr).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import sys
import time

EXIT_OK, EXIT_STAGE_FAILED, EXIT_ERROR = 0, 1, 2
QUESTION = 'What color is the circle?'


@dataclass
class Stage:
    name: str
    ok: bool
    detail: str
    ms: float = 0.0

    def line(self) -> str:
        mark = 'ok    ' if self.ok else 'FAILED'
        timing = f'  {self.ms:8.1f} ms' if self.ms else ''
        return f'{self.name:<10} {mark} {self.detail}{timing}'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help="a model folder, 'bundled' or a hub id in the local cache")
    parser.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    parser.add_argument('--dtype', default='float32', help='float32 | float16 | bfloat16')
    parser.add_argument('--image-size', default='', metavar='WxH',
                        help="the global frame's size (default: the processor's own, or 336x336)")
    parser.add_argument('--layer', type=int, default=None,
                        help="decoder layer to read attention from (default: the model's "
                             'colvlm.yaml, else 14/32 of the depth)')
    parser.add_argument('--question', default=QUESTION, help=f'default: {QUESTION!r}')
    parser.add_argument('--write-settings', action='store_true',
                        help='write colvlm.yaml beside the model (a local folder only)')


def _image_size(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'--image-size must be WxH, e.g. 336x336, got {text!r}') from None
    if width < 28 or height < 28:
        raise ValueError(f'--image-size must be at least 28x28, got {text!r}')
    return width, height


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, (time.perf_counter() - started) * 1e3


def run(args: argparse.Namespace) -> int:
    from colvlm_models.vlm import ModelLoadError, TransformersVlm

    try:
        size = _image_size(args.image_size)
        backend, load_ms = _timed(TransformersVlm, args.model, device=args.device,
                                  dtype=args.dtype, max_new_tokens=4, progress=False,
                                  image_size=size)
    except (ValueError, ModelLoadError) as error:
        print(f'colvlm check-model: {error}', file=sys.stderr)
        return EXIT_ERROR
    try:
        stages, chosen = check_stages(backend, args.question, args.layer)
    except ValueError as error:  # a bad --layer
        print(f'colvlm check-model: {error}', file=sys.stderr)
        return EXIT_ERROR
    width, height = backend.image_size
    rows, cols = backend.grid
    print(f'model      {backend.model_id} ({backend.family.name} family, '
          f'{backend.num_layers} decoder layers), loaded in {load_ms:.0f} ms')
    x0, y0, x1, y1 = backend.family.frame_span(width, height)
    cropped = '' if (x0, y0, x1, y1) == (0.0, 0.0, 1.0, 1.0) else (
        f'; the model sees only x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f} of it (its '
        "processor centre-crops; ViCrop's map is 0 outside): a square frame shows it all")
    print(f'grid       {rows}x{cols} image tokens over a {width}x{height} frame; '
          f'{backend.tokens_per_image} tokens per image{cropped}')
    print(f'attention  read at decoder layer {chosen["layer"]} of 0..{backend.num_layers - 1}')
    for stage in stages:
        print(stage.line())
    if args.write_settings:
        return _write_settings(backend, chosen, stages)
    return EXIT_OK if all(stage.ok for stage in stages) else EXIT_STAGE_FAILED


def check_stages(backend, question: str, layer: int | None) -> tuple[list[Stage], dict]:
    """Each stage's outcome, and what was chosen ({'layer', 'method', 'threshold'})."""
    import numpy as np

    from colvlm_bench.evaluate import InProcessEdge
    from colvlm_bench.glyphvqa import render_scene
    from colvlm_edge.global_encoder import GlobalEncoderConfig
    from colvlm_server.gate import make_policy
    from colvlm_server.pipeline import TwoStagePipeline

    width, height = backend.image_size
    scene = render_scene(np.random.default_rng(0), 640, 480)
    edge = InProcessEdge(GlobalEncoderConfig(width=width, height=height))
    frame = edge.frame(scene.image, stamp_ns=1)
    pipeline = TwoStagePipeline(backend, attention_layer=layer, vicrop_method='rel_att')
    chosen = {'layer': pipeline.attention_layer, 'method': 'rel_att',
              'threshold': pipeline.gate.threshold}
    stages = [_first_pass(backend, frame, question, chosen['layer']),
              _grid_stage(backend, frame.image)]
    result, ms = _timed(pipeline.answer, question, frame, edge, make_policy('always'))
    # The stage's own time: the generic prompt's pass, the box and the crop, not the passes.
    passes = sum(p.latency_ms for p in (result.first, result.second) if p is not None)
    stages.append(_vicrop_stage(result, max(ms - passes, 0.0), scene.image.shape))
    stages.append(_crop_stage(result))
    grad = _grad_stage(backend, frame.image, question, chosen['layer'])
    stages.append(grad)
    vicrop = next(stage for stage in stages if stage.name == 'vicrop')
    if not vicrop.ok and grad.ok:
        chosen['method'] = 'grad_att'
    return stages, chosen


def _first_pass(backend, frame, question: str, layer: int) -> Stage:
    import numpy as np

    from colvlm_server.gate import GateConfig, measure

    try:
        generation, ms = _timed(backend.generate, [frame.image], question,
                                attention_layer=layer)
    except Exception as error:  # a user's model may fail in any way: the report names it
        return Stage('gate', False, f'first pass failed: {_one_line(error)}')
    finite = generation.logits.size and np.isfinite(generation.logits).all()
    if not finite:
        return Stage('gate', False, 'the answer scores are empty or not finite', ms)
    gate = measure(generation.logits, GateConfig())
    eager = generation.attention is not None and np.isfinite(generation.attention).all()
    return Stage('gate', bool(eager),
                 f'answer {generation.text!r}, min-entropy {gate.min_entropy:.3f} nats, '
                 f'{generation.input_tokens} input tokens ({generation.image_tokens} image); '
                 f'eager attention {"came back" if eager else "did NOT come back"}', ms)


def _grid_stage(backend, image) -> Stage:
    from colvlm_models.grid_probe import probe_grid

    try:
        probe, ms = _timed(probe_grid, backend, image)
    except Exception as error:  # a user's model may fail in any way: the report names it
        return Stage('geometry', False, _one_line(error))
    return Stage('geometry', probe.ok, probe.summary(), ms)


def _vicrop_stage(result, ms: float, shape) -> Stage:
    roi, height, width = result.roi, shape[0], shape[1]
    if result.roi_result is None or roi is None:
        return Stage('vicrop', False, f'no box: {result.reason}', ms)
    inside = 0 <= roi.x0 < roi.x1 <= width and 0 <= roi.y0 < roi.y1 <= height
    how = 'whole-image fallback' if result.roi_result.fallback else result.roi_result.reason
    return Stage('vicrop', inside,
                 f'rel_att box ({roi.x0}, {roi.y0}, {roi.x1}, {roi.y1}) in the {width}x{height} '
                 f'original: {how}', ms)


def _crop_stage(result) -> Stage:
    if result.second is None:
        return Stage('crop', False, f'no second pass: {result.status.name} {result.reason}')
    added = result.second.input_tokens - result.first.input_tokens
    return Stage('crop', result.status.name == 'OK',
                 f'crop as a second image: {result.second.input_tokens} input tokens '
                 f'(+{added}), answer {result.second.answer!r}', result.second.latency_ms)


def _grad_stage(backend, image, question: str, layer: int) -> Stage:
    import numpy as np

    try:
        grad, ms = _timed(backend.gradient_attention, image, question, layer)
    except Exception as error:  # a user's model may fail in any way: the report names it
        return Stage('grad_att', False, _one_line(error))
    ok = bool(np.isfinite(grad).all() and grad.shape == tuple(backend.grid))
    return Stage('grad_att', ok, f'{grad.shape[0]}x{grad.shape[1]} map, max {grad.max():.3g}',
                 ms)


def _write_settings(backend, chosen: dict, stages: list[Stage]) -> int:
    from colvlm_models.settings import model_folder, write_model_settings

    folder = model_folder(backend.model_path)
    if folder is None:
        print(f'colvlm check-model: {backend.model_id!r} is not a local folder; no settings '
              'written', file=sys.stderr)
        return EXIT_ERROR
    path = write_model_settings(folder, chosen['threshold'], chosen['method'], chosen['layer'])
    print(f'settings   wrote {path} (vicrop {chosen["method"]} at layer {chosen["layer"]}, '
          f'gate.threshold {chosen["threshold"]:g} kept: calibrate it with colvlm eval '
          '--calibrate)')
    return EXIT_OK if all(stage.ok for stage in stages) else EXIT_STAGE_FAILED


def _one_line(error: BaseException) -> str:
    from colvlm_msgs.constants import first_line

    return first_line(error, with_type=False)
