"""Write a synthetic benchmark data set.

`colvlm dataset glyphvqa OUT --n-images N --seed S` renders Glyph-VQA images and their
evaluation questions into the folder OUT (images/ and questions.jsonl).
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
                        help='number of images (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, metavar='S',
                        help='random seed; the same seed writes the same set '
                             '(default: %(default)s)')
    parser.add_argument('--format', choices=['png', 'jpg'], default='png',
                        help='image file format (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace images/ and questions.jsonl in a non-empty OUT')


def run(args: argparse.Namespace) -> int:
    from colvlm_edge.glyphvqa.dataset import load_dataset, write_dataset

    if args.n_images < 1:
        print(f'colvlm dataset: --n-images must be at least 1, got {args.n_images}',
              file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.overwrite)):
        print(f'colvlm dataset: {out} exists and is not an empty folder '
              '(pass --overwrite to replace its data set)', file=sys.stderr)
        return 2
    folder = write_dataset(out, args.n_images, args.seed, image_format=args.format,
                           overwrite=args.overwrite)
    # Reading the set back validates what was written, at little cost.
    questions = load_dataset(folder)
    by_kind = Counter(question.kind for question in questions)
    kinds = ', '.join(f'{kind} {count}' for kind, count in sorted(by_kind.items()))
    print(f'wrote {folder}: {args.n_images} images, {len(questions)} questions ({kinds})')
    return 0
