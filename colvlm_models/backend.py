"""What the pipeline needs from a model (`VlmBackend`) and what it gets back (`Generation`),
the forms an image may take (pixels or `VisualTokens`) and the one load error. No model code:
colvlm_models/vlm.py implements the backend for transformers. Imported through vlm.py by the
rest of the project, which is where these names have always lived.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DTYPES = ('float32', 'float16', 'bfloat16')
TOKEN_SPLITS = ('tower', 'projector')  # the projector's input | its output (LLM embeddings)


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the model and the cause."""


@dataclass(frozen=True)
class Generation:
    """One greedy answer and what producing it cost."""

    text: str
    logits: np.ndarray  # (T, V) float32 raw logits per answer token; EOS only if T would be 0
    input_tokens: int  # LLM input positions, image tokens included
    image_tokens: int  # of input_tokens, those standing for images
    output_tokens: int  # generated tokens, EOS included
    flops: float  # estimated LLM FLOPs: 2 x decoder parameters x positions processed
    seconds: float  # wall time of generate()
    attention: np.ndarray | None = None  # (heads, N) last input position -> image 0 tokens
    drafted_tokens: int = 0  # speculative decoding: tokens proposed for verification
    accepted_tokens: int = 0  # of drafted_tokens, those the model confirmed


@dataclass(frozen=True, eq=False)
class VisualTokens:
    """One image given as its visual tokens instead of its pixels."""

    tokens: np.ndarray  # (N, D) float32, N = the model's tokens per image
    split: str = 'tower'  # 'tower': the projector's input; 'projector': its output

    def __post_init__(self) -> None:
        if self.split not in TOKEN_SPLITS:
            raise ValueError(f'split must be one of {TOKEN_SPLITS}, got {self.split!r}')


class Captured(Exception):
    """Stops a forward pass once a hook has what it needs."""


class VlmBackend(ABC):
    """The model as the pipeline sees it."""

    model_id: str
    num_layers: int  # decoder layers
    image_size: tuple[int, int]  # (width, height) px of the vision encoder input
    grid: tuple[int, int]  # (rows, cols) of each image's tokens

    @abstractmethod
    def generate(self, images: Sequence[np.ndarray], question: str, *,
                 attention_layer: int | None = None,
                 max_new_tokens: int | None = None) -> Generation:
        """Answer `question` about `images` (global first) in at most `max_new_tokens`
        tokens (None: the backend's own limit); with `attention_layer`, also return the last
        input position's attention to image 0 at that 0-based layer."""

    @abstractmethod
    def image_attention(self, image: np.ndarray, prompt: str, layer: int) -> np.ndarray:
        """(heads, N): the last input position's attention to the image at `layer`, for a
        one-image prompt (ViCrop's generic-prompt map)."""

    def gradient_attention(self, image: np.ndarray, prompt: str, layer: int) -> np.ndarray:
        """(rows, cols) float32 >= 0 over the image's token grid: the last input position's
        attention to the image at `layer`, weighted by the gradient of the answer's first
        token (ViCrop's grad-att), for a one-image prompt."""
        raise NotImplementedError(f'backend {self.model_id!r} has no gradient-weighted '
                                  'attention')

    def visual_tokens(self, image: np.ndarray, split: str = 'tower') -> np.ndarray:
        """(N, D) float32: the visual tokens of one (H, W, 3) uint8 BGR image at `split`,
        which `generate` and `image_attention` accept back as `VisualTokens`."""
        raise NotImplementedError(f'backend {self.model_id!r} has no visual-token path')

