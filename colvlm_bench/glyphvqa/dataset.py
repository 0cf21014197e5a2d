"""Glyph-VQA data sets on disk: a folder with `images/` and `questions.jsonl`.

`write_dataset` renders one deterministic set per seed and style (image i depends only on the
seed, the style and i, so a small set is a prefix of a larger one; a set in the camera style
also writes `style.json`, its parameters and the photos installed); `load_dataset` reads and
validates any
folder in this format, whatever its images' size or format. `read_questions` is its line
reader, for variants whose lines carry more fields (views.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import json
from pathlib import Path, PurePosixPath
import shutil
from typing import TypeVar

import cv2
import numpy as np

from colvlm_bench.glyphvqa.questions import ALL_KINDS, EVAL_KINDS, Question, questions_for_scene
from colvlm_bench.glyphvqa.scene import render_scene

QUESTIONS_FILE = 'questions.jsonl'
STYLE_FILE = 'style.json'
IMAGES_DIR = 'images'
IMAGE_FORMATS = ('png', 'jpg')
_FIELDS = ('id', 'image', 'question', 'answers', 'kind', 'target')

T = TypeVar('T')


def write_dataset(out_dir: str | Path, n_images: int, seed: int, *, image_format: str = 'png',
                  kinds: Sequence[str] = EVAL_KINDS, per_image: int | None = None,
                  jpeg_quality: int = 95, overwrite: bool = False, style='clean') -> Path:
    """Render `n_images` scenes and their questions into `out_dir`; return the folder.

    `style` is as render_scene's: 'clean', 'camera' or a camera.CameraStyle.

    Raises FileExistsError when `out_dir` is a non-empty folder and `overwrite` is false;
    with `overwrite`, only `images/` and `questions.jsonl` are replaced.
    """
    if n_images < 1:
        raise ValueError(f'n_images must be at least 1, got {n_images}')
    params = imwrite_params(image_format, jpeg_quality)
    clean = isinstance(style, str) and style == 'clean'
    if not clean:
        from colvlm_bench.glyphvqa.camera import resolve_style
        style = resolve_style(style)  # a bad style fails before the folder is touched
    out = prepare_output(out_dir, overwrite)
    (out / STYLE_FILE).unlink(missing_ok=True)
    if not clean:
        write_style(out, style, seed)
    questions: list[Question] = []
    for index in range(n_images):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        scene = render_scene(rng, style=style)
        image_name = f'{IMAGES_DIR}/{index:05d}.{image_format}'
        if not cv2.imwrite(str(out / image_name), scene.image, params):
            raise OSError(f'could not write {out / image_name}')
        questions += questions_for_scene(scene, rng, image_name, kinds=kinds,
                                         per_image=per_image)
    write_questions(out, (question.to_json() for question in questions))
    return out


def write_style(out: Path, style, seed: int) -> None:  # style: a camera.CameraStyle
    """`out/style.json`: the camera style's parameters, the seed and the photos it could use
    (a scene with a photo background depends on them)."""
    from colvlm_bench.glyphvqa.clutter import available_photos
    document = {'style': 'camera', 'seed': seed, 'camera': style.to_json(),
                'photos': list(available_photos())}
    (out / STYLE_FILE).write_text(json.dumps(document, indent=2) + '\n', encoding='utf-8')


def imwrite_params(image_format: str, jpeg_quality: int) -> list[int]:
    """The cv2.imwrite parameters for `image_format`; ValueError for a bad format or quality."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f'image_format must be one of {IMAGE_FORMATS}, got {image_format!r}')
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f'jpeg_quality must be in 1..100, got {jpeg_quality}')
    return [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if image_format == 'jpg' else []


def prepare_output(out_dir: str | Path, overwrite: bool) -> Path:
    """Make `out_dir/images/`; return `out_dir`.

    Raises FileExistsError when `out_dir` is a non-empty folder and `overwrite` is false;
    with `overwrite`, only `images/` and `questions.jsonl` are removed.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f'{out} exists and is not a folder')
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f'{out} is not empty (pass overwrite=True to replace it)')
        shutil.rmtree(out / IMAGES_DIR, ignore_errors=True)
        (out / QUESTIONS_FILE).unlink(missing_ok=True)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    return out


def write_questions(out: Path, records: Iterable[dict]) -> None:
    """Write `out/questions.jsonl`, one JSON object a line.

    Call it after writing the images, so that a folder with questions.jsonl always has all
    its images.
    """
    with open(out / QUESTIONS_FILE, 'w', encoding='utf-8') as stream:
        for record in records:
            stream.write(json.dumps(record) + '\n')


def load_dataset(folder: str | Path) -> list[Question]:
    """Read and validate `folder/questions.jsonl`.

    Raises ValueError naming the file, line and field of the first bad line.
    """
    return read_questions(folder, lambda question, record: question)


class FieldError(Exception):
    """One field of a questions.jsonl line is bad; the reader adds the file and line."""

    def __init__(self, field: str, problem: str):
        super().__init__(f'{field}: {problem}')
        self.field = field
        self.problem = problem


def read_questions(folder: str | Path, convert: Callable[[Question, dict], T]) -> list[T]:
    """Read and validate `folder/questions.jsonl`, and `convert` each line's Question and
    its JSON object into an item; `convert` raises FieldError for a bad extra field.

    Raises ValueError naming the file, line and field of the first bad line.
    """
    folder = Path(folder)
    path = folder / QUESTIONS_FILE
    if not path.is_file():
        raise ValueError(f'{path}: no such file')
    items: list[T] = []
    seen_ids: set[str] = set()
    known_images: set[str] = set()
    with open(path, encoding='utf-8') as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                question = _parse_record(record, folder, known_images)
                if question.id in seen_ids:
                    raise FieldError('id', f'duplicate id {question.id!r}')
                item = convert(question, record)
            except FieldError as error:
                raise ValueError(f'{path}:{line_number}: field {error.field!r}: '
                                 f'{error.problem}') from None
            except json.JSONDecodeError as error:
                raise ValueError(f'{path}:{line_number}: not valid JSON: {error.msg}') from None
            seen_ids.add(question.id)
            items.append(item)
    if not items:
        raise ValueError(f'{path}: no questions')
    return items


def check_image_path(folder: Path, image: str, field: str = 'image') -> None:
    """FieldError unless `image` names a file inside `folder` (a relative POSIX path)."""
    relative = PurePosixPath(image)
    if relative.is_absolute() or '..' in relative.parts:
        raise FieldError(field, f'must be a path inside the data set folder, got {image!r}')
    if not (folder / relative).is_file():
        raise FieldError(field, f'no such file {folder / relative}')


def _parse_record(record, folder: Path, known_images: set[str]) -> Question:
    if not isinstance(record, dict):
        raise FieldError('(line)', f'expected a JSON object, got {type(record).__name__}')
    for field in _FIELDS:
        if field not in record:
            raise FieldError(field, 'missing')
    for field in ('id', 'image', 'question'):
        if not isinstance(record[field], str) or not record[field].strip():
            raise FieldError(field, f'expected a non-empty string, got {record[field]!r}')

    image = record['image']
    if image not in known_images:
        check_image_path(folder, image)
        known_images.add(image)

    answers = record['answers']
    if (not isinstance(answers, list) or not answers
            or not all(isinstance(a, str) and a.strip() for a in answers)):
        raise FieldError('answers', f'expected a non-empty list of strings, got {answers!r}')
    if record['kind'] not in ALL_KINDS:
        raise FieldError('kind', f'must be one of {ALL_KINDS}, got {record["kind"]!r}')
    return Question(record['id'], image, record['question'], tuple(answers), record['kind'],
                    _parse_target(record['target']))


def _parse_target(target) -> tuple[int, int, int, int] | None:
    if target is None:
        return None
    # bool is an int in Python; a box of booleans is a bug upstream, not a box.
    if (not isinstance(target, list) or len(target) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in target)):
        raise FieldError('target', f'expected null or [x0, y0, x1, y1] integers, got {target!r}')
    x0, y0, x1, y1 = target
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise FieldError('target', f'expected 0 <= x0 < x1 and 0 <= y0 < y1, got {target!r}')
    return x0, y0, x1, y1
