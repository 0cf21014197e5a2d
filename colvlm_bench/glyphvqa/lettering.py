"""Sign lettering for the camera style: a sign's text in any Hershey font, italic or not, at
a stroke width and a small rotation, sized so that its ink is 14-32 px tall.

It knows text and fonts, not scenes; the style's fonts, italic, stroke and text_rotation
fields (camera.CameraStyle) say what to draw from.
"""

from __future__ import annotations

import math

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


def make_sign(text_rng: np.random.Generator, rng: np.random.Generator,
              style) -> SignDraft:
    """A sign's text (drawn from `text_rng`) in a random font of `style` (None: the clean
    fonts, unrotated), sized so that its (rotated) ink height lands in TEXT_HEIGHT_RANGE."""
    length = int(text_rng.integers(TEXT_LENGTH[0], TEXT_LENGTH[1] + 1))
    text = ''.join(TEXT_ALPHABET[i]
                   for i in text_rng.integers(len(TEXT_ALPHABET), size=length))
    fonts = style.fonts if style else FONTS  # the clean style's
    font = fonts[int(rng.integers(len(fonts)))]
    if style and rng.random() < style.italic:
        font |= cv2.FONT_ITALIC
    stroke = rng.uniform(*style.stroke) if style else 0.1
    angle = rng.uniform(*style.text_rotation) * rng.choice((-1, 1)) if style else 0.0
    low, high = TEXT_HEIGHT_RANGE
    for _ in range(100):
        target = int(rng.integers(low + 1, high))
        thickness = max(1, round(target * stroke))
        scale = target / 21.0
        for _ in range(2):  # fonts differ in size: measure and rescale
            alpha = _rotated(text_alpha(text, font, scale, thickness), angle)
            scale *= target / ink_height(alpha)
        alpha = _rotated(text_alpha(text, font, scale, thickness), angle)
        if low <= ink_height(alpha) <= high:
            break
    else:
        raise RuntimeError(f'could not size {text!r} to an ink height in {TEXT_HEIGHT_RANGE}')
    height = ink_height(alpha)
    margin_x = int(round(height * rng.uniform(0.3, 0.8))) + 2
    margin_y = int(round(height * rng.uniform(0.25, 0.6))) + 2
    return SignDraft(text, alpha, margin_x, margin_y)


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
