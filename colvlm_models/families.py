"""What differs between VLM families on the way to ViCrop: which input positions hold the first
image's tokens that cover the whole frame, and the (rows, cols) grid they form.

`TransformersVlm` asks its family's `Family` for `image_layout(inputs)` on each call and reads
the attention at those positions; the grid then maps onto the global frame's geometry, row-major,
the whole frame in every cell row (colvlm_server/vicrop.py). The families:
- `generic`: LLaVA-1.5 style, one fixed square grid per image (the first rows*cols image
  tokens); where the processor centre-crops a frame that is not square, the grid shows the
  middle of the frame only (`frame_span`), and the attention outside it is 0.
- `llava_next` (LLaVA-NeXT): the whole-image base grid, which comes before the any-res tiles.
- `qwen_vl` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): dynamic resolution; the grid is the processor's
  `image_grid_thw` of image 0 divided by the vision tower's spatial merge (2x2 patches a token).
- `gemma3` (Gemma 3): the generic layout (pooled square grid between <start_of_image> and
  <end_of_image>), but only the model's own generate() decodes it (bidirectional image mask).
- `gemma4` (Gemma 4): aspect-ratio-preserving resize; each image's patches are pooled k x k
  into soft tokens, row-major; the grid is image 0's patch extent (`image_position_ids`) / k.
- `idefics3` (Idefics3, SmolVLM): image splitting; each image is its tiles then a global
  sub-image (after the `<global-img>` token) that shows the whole frame: that one is read.
Images, several of them, go to every family the same way: one image entry each in the chat
template's content, pixels through the processor. Families know nothing about gates or crops.
"""

from __future__ import annotations

import math

import numpy as np

FULL_FRAME = (0.0, 0.0, 1.0, 1.0)  # (x0, y0, x1, y1) fractions of the frame


class Family:
    """The generic layout: image 0's tokens are the first rows*cols image-token positions."""

    name = 'generic'
    needs = ''  # the processor output the grid is read from, where the family has one
    # Whether accelerate.greedy_decode (1-D positions, a causal mask, image positions filled
    # from the projector) computes what the model's own forward does for this family.
    custom_decode = True

    def __init__(self, config, processor, image_token_id: int) -> None:
        self.config = config
        self.processor = processor
        self.image_token_id = image_token_id
        self._grid: tuple[int, int] | None = None

    def _image_positions(self, input_ids) -> np.ndarray:
        """(M,) int positions of every image token of the first sequence."""
        return (input_ids[0] == self.image_token_id).nonzero().flatten().cpu().numpy()

    def grid(self, inputs: dict, n_images: int) -> tuple[int, int]:
        """Fixed per model: worked out on the first call (the backend's one-image probe)."""
        if self._grid is not None:
            return self._grid
        tokens = len(self._image_positions(inputs['input_ids'])) // max(n_images, 1)
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f'{tokens} image tokens per image do not form a square grid')
        self._grid = (side, side)
        return self._grid

    def image_layout(self, inputs: dict, n_images: int) -> tuple[np.ndarray, tuple[int, int]]:
        """((N,) positions of image 0's whole-frame tokens, row-major; (rows, cols))."""
        rows, cols = self.grid(inputs, n_images)
        return self._image_positions(inputs['input_ids'])[:rows * cols], (rows, cols)

    def frame_span(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The part of a width x height frame that image 0's grid shows, as (x0, y0, x1, y1)
        fractions: all of it, unless the processor cuts the middle out (CLIP's resizes the
        shortest edge, or to a fixed size, then centre-crops), as LLaVA-1.5's does to a frame
        that is not square."""
        processor = getattr(self.processor, 'image_processor', None)
        crop = dict(getattr(processor, 'crop_size', None) or {})
        size = dict(getattr(processor, 'size', None) or {})
        if not (getattr(processor, 'do_center_crop', False) and crop.get('width')
                and crop.get('height')):
            return FULL_FRAME
        if size.get('shortest_edge'):
            scale = size['shortest_edge'] / min(width, height)
            resized = (width * scale, height * scale)
        elif size.get('width') and size.get('height'):
            resized = (size['width'], size['height'])
        else:
            return FULL_FRAME
        shown_x = min(crop['width'] / resized[0], 1.0)
        shown_y = min(crop['height'] / resized[1], 1.0)
        return ((1 - shown_x) / 2, (1 - shown_y) / 2, (1 + shown_x) / 2, (1 + shown_y) / 2)


class LlavaNextFamily(Family):
    """LLaVA-NeXT: the whole image, squeezed to the tower's input, comes first as a base grid
    (tower input / patch), then its any-res tiles; the base grid is read. Its crops come after
    the squeeze, so they cut nothing of the base. Its tiles and image newlines are not the
    projector's rows as they are, which the custom decoding loop assumes."""

    name = 'llava_next'
    custom_decode = False

    def grid(self, inputs: dict, n_images: int) -> tuple[int, int]:
        vision = self.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        return side, side

    def frame_span(self, width: int, height: int) -> tuple[float, float, float, float]:
        return FULL_FRAME


class QwenVlFamily(Family):
    name = 'qwen_vl'
    custom_decode = False
    needs = 'image_grid_thw'

    def grid(self, inputs: dict, n_images: int) -> tuple[int, int]:
        vision = getattr(self.config, 'vision_config', None)
        merge = int(getattr(vision, 'spatial_merge_size', 2))
        _, height, width = (int(v) for v in inputs['image_grid_thw'][0])
        return height // merge, width // merge  # patches -> merged tokens


class Gemma3Family(Family):
    """Gemma 3's layout is the generic one; its image tokens attend to each other both ways,
    which the custom decoding loop's causal mask does not."""

    name = 'gemma3'
    custom_decode = False


class Gemma4Family(Family):
    name = 'gemma4'
    custom_decode = False
    needs = 'image_position_ids'

    def grid(self, inputs: dict, n_images: int) -> tuple[int, int]:
        positions = inputs['image_position_ids'][0]  # (max_patches, 2) patch (x, y); -1: pad
        image_processor = getattr(self.processor, 'image_processor', None)
        kernel = int(getattr(image_processor, 'pooling_kernel_size', None)
                     or self.config.vision_config.pooling_kernel_size)
        real = positions[(positions >= 0).all(dim=-1)]
        width, height = (int(v) + 1 for v in real.max(dim=0).values)
        return height // kernel, width // kernel  # patches -> pooled soft tokens


class Idefics3Family(Family):
    name = 'idefics3'
    custom_decode = False

    def grid(self, inputs: dict, n_images: int) -> tuple[int, int]:
        tokens = int(getattr(self.processor, 'image_seq_len', 0))
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f'{tokens} tokens per sub-image do not form a square grid')
        return side, side

    def image_layout(self, inputs: dict, n_images: int) -> tuple[np.ndarray, tuple[int, int]]:
        rows, cols = self.grid(inputs, n_images)
        input_ids = inputs['input_ids']
        positions = self._image_positions(input_ids)
        tokenizer = getattr(self.processor, 'tokenizer', None)
        marker = tokenizer.convert_tokens_to_ids('<global-img>') if tokenizer else None
        if marker is not None and marker != tokenizer.unk_token_id:
            markers = (input_ids[0] == marker).nonzero().flatten().cpu().numpy()
            if len(markers):  # split image 0: its global sub-image follows the first marker
                positions = positions[positions > markers[0]]
        return positions[:rows * cols], (rows, cols)


FAMILIES = {'llava_next': LlavaNextFamily, 'qwen2_vl': QwenVlFamily,
            'qwen2_5_vl': QwenVlFamily, 'qwen3_vl': QwenVlFamily, 'idefics3': Idefics3Family,
            'smolvlm': Idefics3Family, 'gemma3': Gemma3Family, 'gemma4': Gemma4Family}


def family_for(config, processor, image_token_id: int) -> Family:
    """The family adapter for a loaded model's config (generic when its type is not listed)."""
    return FAMILIES.get(config.model_type, Family)(config, processor, image_token_id)


def fit_grid(attention: np.ndarray, source: tuple[int, int], target: tuple[int, int],
             span: tuple[float, float, float, float] = FULL_FRAME) -> np.ndarray:
    """(heads, R*C) float32: (heads, r*c) attention over a `source` grid that shows `span` of
    the frame (Family.frame_span) resampled (bilinear, cell centres) onto the `target` grid
    over the whole frame; target cells whose centre the source does not show get 0. A dynamic-
    resolution family's grid follows each image's size, the backend's grid is fixed."""
    if tuple(source) == tuple(target) and tuple(span) == FULL_FRAME:
        return attention
    heads = attention.shape[0]
    maps = attention.reshape(heads, *source).astype(np.float64)
    x0, y0, x1, y1 = span

    def axis(values: np.ndarray, old: int, new: int, low: float, high: float,
             along: int) -> np.ndarray:
        centres = (np.arange(new) + 0.5) / new  # target centres, frame fractions
        where = (centres - low) / (high - low) * old - 0.5  # in source cells
        fitted = np.apply_along_axis(
            lambda line: np.interp(where, np.arange(old), line), along, values)
        shown = ((centres >= low) & (centres <= high)).astype(np.float64)
        return fitted * shown.reshape([-1 if k == along else 1 for k in range(values.ndim)])

    maps = axis(maps, source[0], target[0], y0, y1, 1)
    maps = axis(maps, source[1], target[1], x0, x1, 2)
    return maps.reshape(heads, -1).astype(np.float32)


class _NoVideo(dict):
    """Stands for a processor's video processor where torchvision (which transformers needs
    for every video processor) is not installed: colvlm passes images only."""

    def to_dict(self) -> dict:
        return {}


def load_processor(path: str):
    """AutoProcessor for `path`; a processor that also declares a video processor (Qwen-VL's)
    loads without torchvision, with the video part stubbed out."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path)
    except ImportError as error:
        if 'torchvision' not in str(error).lower():
            raise
    from transformers import processing_utils

    # transformers type-checks each sub-processor against a class it defines only with
    # torchvision; without it, the check would fail on any stand-in.
    module = processing_utils.transformers_module
    if not hasattr(module, 'VideoProcessorMixin'):
        module.VideoProcessorMixin = object
    return AutoProcessor.from_pretrained(path, video_processor=_NoVideo())
