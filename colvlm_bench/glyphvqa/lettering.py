"""Sign lettering for the camera style: a sign's text in any Hershey font, italic or not, or in
a TrueType face, at a stroke width and a small rotation, sized so that its ink is 14-32 px tall
(the style's text_height).

It knows text and fonts, not scenes; the style's fonts, italic, stroke, text_rotation,
text_height, truetype and typefaces fields (camera.CameraStyle) say what to draw from. The
named TrueType families are faces matplotlib (a dependency) ships, so every install draws the
same glyphs; a font file or folder of your own can stand beside them.
"""

from __future__ import annotations

from functools import lru_cache
import math
from pathlib import Path

import cv2
import numpy as np

from colvlm_bench.glyphvqa.drawing import (
    FONTS,
    TEXT_ALPHABET,
    TEXT_HEIGHT_RANGE,
    TEXT_LENGTH,
    SignDraft,
    ink_height,
    text_alpha,
)

HERSHEY_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
                 cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
                 cv2.FONT_HERSHEY_COMPLEX_SMALL, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
                 cv2.FONT_HERSHEY_SCRIPT_COMPLEX)
# TrueType families (file names in matplotlib's mpl-data/fonts/ttf), drawn by Pillow. Their
# glyphs differ from every Hershey font: a reader trained on Hershey text alone misreads them.
TYPEFACES = {
    'dejavu': tuple(f'DejaVu{family}{face}.ttf' for family in ('Sans', 'Serif', 'SansMono')
                    for face in ('', '-Bold', '-Oblique' if family != 'Serif' else '-Italic')),
    'stix': ('STIXGeneral.ttf', 'STIXGeneralBol.ttf', 'STIXGeneralItalic.ttf',
             'STIXGeneralBolIta.ttf'),
    'computer-modern': ('cmr10.ttf', 'cmss10.ttf', 'cmtt10.ttf', 'cmb10.ttf'),
}
_MATPLOTLIB_FACES = frozenset(face for faces in TYPEFACES.values() for face in faces)
FONT_SUFFIXES = ('.ttf', '.otf')
_PX_PER_SCALE = 30.0  # a TrueType size (px) per Hershey scale unit: about the same cap height


def make_sign(text_rng: np.random.Generator, rng: np.random.Generator,
              style) -> SignDraft:
    """A sign's text (drawn from `text_rng`) in a random font of `style` (None: the clean
    fonts, unrotated), sized so that its (rotated) ink height lands in the style's
    text_height (the clean style's TEXT_HEIGHT_RANGE)."""
    length = int(text_rng.integers(TEXT_LENGTH[0], TEXT_LENGTH[1] + 1))
    text = ''.join(TEXT_ALPHABET[i]
                   for i in text_rng.integers(len(TEXT_ALPHABET), size=length))
    fonts = style.fonts if style else FONTS  # the clean style's
    font = fonts[int(rng.integers(len(fonts)))]
    if style and rng.random() < style.italic:
        font |= cv2.FONT_ITALIC
    stroke = rng.uniform(*style.stroke) if style else 0.1
    angle = rng.uniform(*style.text_rotation) * rng.choice((-1, 1)) if style else 0.0
    render = text_alpha
    # Drawn only when TrueType is on, so a style without it draws what it always drew.
    if style and style.truetype > 0 and rng.random() < style.truetype:
        faces = typeface_files(style.typefaces)
        render = _truetype(faces[int(rng.integers(len(faces)))])
    low, high = style.text_height if style else TEXT_HEIGHT_RANGE
    for _ in range(100):
        target = int(rng.integers(low + 1, high))
        thickness = max(1, round(target * stroke))
        scale = target / 21.0
        for _ in range(2):  # fonts differ in size: measure and rescale
            measured = ink_height(_rotated(render(text, font, scale, thickness), angle))
            if not measured:  # too small to leave ink (text of a few px): try again
                break
            scale *= target / measured
        alpha = _rotated(render(text, font, scale, thickness), angle)
        if low <= ink_height(alpha) <= high:
            break
    else:
        raise RuntimeError(f'could not size {text!r} to an ink height in {(low, high)}')
    height = ink_height(alpha)
    margin_x = int(round(height * rng.uniform(0.3, 0.8))) + 2
    margin_y = int(round(height * rng.uniform(0.25, 0.6))) + 2
    return SignDraft(text, alpha, margin_x, margin_y)


def typeface_files(families) -> tuple[str, ...]:
    """Every face of `families`, in order. Each entry is a TYPEFACES family (its files), a
    font file (.ttf, .otf) or a folder, whose font files (found recursively, in sorted path
    order) are taken where they have a glyph for every character of TEXT_ALPHABET; a folder's
    draws depend on what it holds. ValueError naming an entry that is none of these."""
    return tuple(face for family in families
                 for face in (TYPEFACES[family] if family in TYPEFACES
                              else _font_files(str(family))))


@lru_cache(maxsize=64)
def _font_files(entry: str) -> tuple[str, ...]:
    """The usable font files of a file or folder entry of typeface_files."""
    if not entry.strip():  # Path('') is the working folder: never searched unasked
        raise ValueError('typeface entry is empty')
    path = Path(entry)
    if path.is_file():
        if path.suffix.lower() not in FONT_SUFFIXES or not _letters_all(path):
            raise ValueError(f'typeface {entry} is not a .ttf/.otf font with a glyph for '
                             f'each of {TEXT_ALPHABET}')
        return (str(path),)
    if path.is_dir():
        found = tuple(str(f) for f in sorted(path.rglob('*'))
                      if f.suffix.lower() in FONT_SUFFIXES and f.is_file() and _letters_all(f))
        if not found:
            raise ValueError(f'typeface folder {entry} holds no .ttf/.otf font with a glyph '
                             f'for each of {TEXT_ALPHABET}')
        return found
    raise ValueError(f'typeface {entry!r} is neither a family among {", ".join(TYPEFACES)} '
                     f'nor a font file or folder')


def _letters_all(path: Path) -> bool:
    """Whether the font at `path` maps every character of TEXT_ALPHABET to a glyph."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        cmap = TTFont(str(path), lazy=True).getBestCmap() or {}
    except (TTLibError, OSError, ValueError, KeyError, AssertionError):
        return False
    return all(ord(char) in cmap for char in TEXT_ALPHABET)


def truetype_ink(text: str, face: str, height: int) -> np.ndarray:
    """`text` in the TrueType face `face`, its ink exactly `height` px tall (rendered at about
    that size, then resized): `(height, w) uint8` coverage, as text_alpha."""
    alpha = truetype_alpha(text, face, max(6, round(height * _PX_PER_SCALE / 21.0)))
    if alpha.shape[0] == height:
        return alpha
    width = max(1, round(alpha.shape[1] * height / alpha.shape[0]))
    return cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)


def typeface_file(name: str) -> Path:
    """The path of a face typeface_files gave: one of TYPEFACES' files, in the installed
    matplotlib, or a font file's own path."""
    import matplotlib

    if name not in _MATPLOTLIB_FACES:
        return Path(name)
    path = Path(matplotlib.get_data_path()) / 'fonts' / 'ttf' / name
    if not path.is_file():
        raise FileNotFoundError(f'TrueType face {name} is not in this matplotlib ({path})')
    return path


@lru_cache(maxsize=256)
def _font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(typeface_file(name)), size)


def _truetype(name: str):
    """A renderer with text_alpha's arguments that letters in the TrueType face `name`: the
    scale sets the size as for a Hershey font, the Hershey thickness adds up to two px of
    outline (the face's own weight is the rest), the Hershey font number is not used."""
    def render(text: str, _font_number: int, scale: float, thickness: int) -> np.ndarray:
        return truetype_alpha(text, name, max(6, round(scale * _PX_PER_SCALE)),
                              min(2, (thickness - 1) // 2))
    return render


def truetype_alpha(text: str, face: str, size: int, outline: int = 0) -> np.ndarray:
    """`text` in the TrueType face `face` at `size` px with `outline` px of stroke, cropped to
    its ink: `(h, w) uint8` coverage, 255 = full ink (as text_alpha)."""
    from PIL import Image, ImageDraw

    font = _font(face, int(size))
    x0, y0, x1, y1 = font.getbbox(text, stroke_width=outline)
    pad = 4 + outline
    canvas = Image.new('L', (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), text, font=font, fill=255,
                                stroke_width=outline, stroke_fill=255)
    alpha = np.asarray(canvas)
    ys, xs = np.nonzero(alpha)
    return alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1].copy()


def _rotated(alpha: np.ndarray, degrees: float) -> np.ndarray:
    """`alpha` rotated by `degrees` about its centre on a canvas that holds it, re-cropped."""
    if abs(degrees) < 1e-3:
        return alpha
    h, w = alpha.shape
    pad = int(math.ceil(max(h, w) * 0.2)) + 2
    canvas = cv2.copyMakeBorder(alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    center = (canvas.shape[1] / 2.0, canvas.shape[0] / 2.0)
    matrix = cv2.getRotationMatrix2D(center, degrees, 1.0)
    turned = cv2.warpAffine(canvas, matrix, canvas.shape[::-1], flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(turned)
    return turned[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
