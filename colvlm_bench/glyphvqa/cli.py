"""Write a synthetic benchmark data set.

`colvlm dataset glyphvqa OUT --n-images N --seed S` renders Glyph-VQA images and their
evaluation questions into the folder OUT (images/ and questions.jsonl). With
`--views front,left,right,rear` it writes the multi-view variant instead: N scenes, one image
per view, the evidence of each question in one view (colvlm_bench/glyphvqa/views.py).
`--style camera` draws the camera-like style (colvlm_bench/glyphvqa/camera.py); with
`--factors blur,noise` only those camera factors are on (the rest draw as clean; the default
is every factor but pose, which turns shapes, and `--factors all` adds it), and with
`--severity 1|2|3` each of them is narrowed to its mild, middle or severe third: one factor at
one severity is a cell of the robustness table (tools/bench_robustness.py). `--truetype 0.5
--typefaces stix` letters half of the signs in TrueType faces instead of Hershey fonts (a
family matplotlib ships, or a font file or folder of your own); `--text-height 8,11` draws
their ink 8-11 px tall instead of 14-32; with pose on, `--pose-share 0.4` turns the shapes of
40% of the scenes only.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('name', choices=['glyphvqa'], help='which data set to write')
    parser.add_argument('out', metavar='OUT', help='output folder (must be empty or absent)')
    parser.add_argument('--n-images', type=int, default=200, metavar='N',
                        help='number of images, or of scenes with --views '
                             '(default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, metavar='S',
                        help='random seed; the same seed writes the same set '
                             '(default: %(default)s)')
    parser.add_argument('--format', choices=['png', 'jpg'], default='png',
                        help='image file format (default: %(default)s)')
    parser.add_argument('--views', default=None, metavar='NAMES',
                        help='write the multi-view variant instead: one image per camera '
                             'name, comma-separated, e.g. front,left,right,rear')
    parser.add_argument('--style', choices=['clean', 'camera'], default='clean',
                        help='clean: exact colours on muted backgrounds, as the bundled model '
                             'was trained; camera: colour bands, white balance and shadows, '
                             'photos and clutter, every Hershey font, warp, blur, noise, JPEG '
                             '(default: %(default)s)')
    parser.add_argument('--factors', default=None, metavar='LIST',
                        help='with --style camera: the camera factors to turn on, '
                             'comma-separated among color, clutter, fonts, warp, blur, noise, '
                             'jpeg, pose, or all (default: all but pose, which turns squares '
                             'and triangles); the others draw as clean')
    parser.add_argument('--severity', type=int, choices=[1, 2, 3], default=None,
                        help='with --style camera: narrow each factor on to its mild (1), '
                             'middle (2) or severe (3) third (default: its whole range), e.g. '
                             '--factors blur --severity 3 for one robustness-table cell')
    parser.add_argument('--truetype', type=float, default=None, metavar='SHARE',
                        help='with --style camera: the share of signs lettered in a TrueType '
                             'face instead of a Hershey font (default: 0)')
    parser.add_argument('--typefaces', default=None, metavar='LIST',
                        help='with --truetype: the TrueType faces, comma-separated: families '
                             'among dejavu, stix, computer-modern, or .ttf/.otf files or '
                             'folders of them (default: dejavu)')
    parser.add_argument('--text-height', default=None, metavar='LOW,HIGH',
                        help="with --style camera: the signs' ink height range in px of the "
                             'original (default: 14,32)')
    parser.add_argument('--pose-share', type=float, default=None, metavar='SHARE',
                        help='with pose among --factors: the share of scenes whose squares and '
                             'triangles are turned, the rest upright (default: 1)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace images/, questions.jsonl and style.json in a non-empty OUT')


def run(args: argparse.Namespace) -> int:
    from colvlm_bench.glyphvqa.views import check_view_names

    if args.n_images < 1:
        print(f'colvlm dataset: --n-images must be at least 1, got {args.n_images}',
              file=sys.stderr)
        return 2
    views = None
    if args.views is not None:
        try:
            views = check_view_names([name.strip() for name in args.views.split(',')])
        except ValueError as error:
            print(f'colvlm dataset: --views: {error}', file=sys.stderr)
            return 2
    try:
        style = dataset_style(args.style, args.factors, args.severity, args.truetype,
                              args.typefaces, args.text_height, args.pose_share)
    except ValueError as error:
        print(f'colvlm dataset: {error}', file=sys.stderr)
        return 2
    if views is not None and style != 'clean':
        print('colvlm dataset: --views draws the clean style only', file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        problem = _out_problem(out, args.overwrite)
        if problem:
            print(f'colvlm dataset: {problem}', file=sys.stderr)
            return 2
        folder, questions, what = _write(out, args, views, style)
    except OSError as error:
        print(f'colvlm dataset: cannot write {error.filename or out}: '
              f'{error.strerror or error}', file=sys.stderr)
        return 2
    by_kind = Counter(question.kind for question in questions)
    kinds = ', '.join(f'{kind} {count}' for kind, count in sorted(by_kind.items()))
    print(f'wrote {folder}: {what}, {len(questions)} questions ({kinds})')
    return 0


def _out_problem(out: Path, overwrite: bool) -> str:
    """Why OUT cannot take a data set, or ''."""
    if out.exists() and not out.is_dir():
        return f'{out} is a file, not a folder'
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        return f'{out} is not empty (pass --overwrite to replace its data set)'
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f'{parent} is a file, not a folder'
    return ''


def _write(out: Path, args: argparse.Namespace, views, style) -> tuple:
    """(folder, questions, what was written); reading the set back validates it."""
    from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
    from colvlm_bench.glyphvqa.views import load_views_dataset, write_views_dataset

    if views is None:
        folder = write_dataset(out, args.n_images, args.seed, image_format=args.format,
                               overwrite=args.overwrite, style=style)
        what = f'{args.n_images} images' + describe_style(style, args.severity)
        return folder, load_dataset(folder), what
    folder = write_views_dataset(out, args.n_images, args.seed, views=views,
                                 image_format=args.format, overwrite=args.overwrite)
    what = f'{args.n_images} scenes x {len(views)} views ({",".join(views)})'
    return folder, [item.question for item in load_views_dataset(folder)], what


def dataset_style(name: str, factors: str | None, severity: int | None,
                  truetype: float | None = None, typefaces: str | None = None,
                  text_height: str | None = None, pose_share: float | None = None):
    """'clean', or the camera.CameraStyle that --style, --factors, --severity, --truetype,
    --typefaces, --text-height and --pose-share ask for; ValueError naming the bad flag."""
    if name == 'clean':
        if (factors, severity, truetype, typefaces, text_height, pose_share) != (None,) * 6:
            raise ValueError('--factors, --severity, --truetype, --typefaces, --text-height and '
                             '--pose-share need --style camera')
        return 'clean'
    from dataclasses import replace

    from colvlm_bench.glyphvqa.camera import DEFAULT_FACTORS, FACTORS, CameraStyle
    from colvlm_bench.glyphvqa.lettering import TYPEFACES, typeface_files
    if factors is None:
        chosen = list(DEFAULT_FACTORS)
    else:
        chosen = [f.strip() for f in factors.split(',') if f.strip()]
        if chosen == ['all']:
            chosen = list(FACTORS)
    unknown = [f for f in chosen if f not in FACTORS]
    if unknown or not chosen:
        raise ValueError(f'--factors must be all or a comma list among {",".join(FACTORS)}, '
                         f'got {factors!r}')
    style = CameraStyle.only(chosen, severity)
    changes: dict = {}
    if truetype is not None:
        if not 0.0 <= truetype <= 1.0:
            raise ValueError(f'--truetype must be a share in [0, 1], got {truetype:g}')
        changes['truetype'] = truetype
    if typefaces is not None:
        names = tuple(n.strip() for n in typefaces.split(',') if n.strip())
        try:
            typeface_files(names or ('',))  # no name at all is refused as an empty one
        except ValueError as error:
            raise ValueError(f'--typefaces must be a comma list of families among '
                             f'{",".join(TYPEFACES)}, font files or folders: {error}') from None
        changes['typefaces'] = names
    if text_height is not None:
        changes['text_height'] = _text_height(text_height)
    if changes and 'fonts' not in style.factors:
        raise ValueError('--truetype, --typefaces and --text-height need the fonts factor on '
                         '(--factors)')
    if pose_share is not None:
        if 'pose' not in style.factors or not 0.0 <= pose_share <= 1.0:
            raise ValueError(f'--pose-share must be a share in [0, 1] with pose among '
                             f'--factors (e.g. --factors all), got {pose_share:g} with factors '
                             f'{",".join(style.factors)}')
        changes['pose_share'] = pose_share
    return replace(style, **changes)


def _text_height(text: str) -> tuple[int, int]:
    """'LOW,HIGH' as a valid CameraStyle.text_height; ValueError naming --text-height."""
    from colvlm_bench.glyphvqa.camera import CameraStyle
    try:
        low, high = (int(part) for part in text.split(','))
        CameraStyle(text_height=(low, high))
    except ValueError as error:
        detail = str(error) if 'text_height' in str(error) else 'two integers'
        raise ValueError(f'--text-height must be LOW,HIGH ink heights in px, got {text!r} '
                         f'({detail})') from None
    return low, high


def describe_style(style, severity: int | None) -> str:
    """'' for the clean style (the summary line it always had), else e.g.
    ' in the camera style (blur, noise) at severity 2'."""
    if style == 'clean':
        return ''
    truetype = (f', {100 * style.truetype:g}% of signs in TrueType '
                f'({", ".join(style.typefaces)})' if style.truetype else '')
    from colvlm_bench.glyphvqa.drawing import TEXT_HEIGHT_RANGE
    low, high = style.text_height
    size = '' if style.text_height == TEXT_HEIGHT_RANGE else f', sign text {low}-{high} px'
    return (f' in the camera style ({", ".join(style.factors)}{truetype}{size})'
            + (f' at severity {severity}' if severity else ''))
