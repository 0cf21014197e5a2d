"""VLM backends: load once, answer a question about one or more images, and say what it cost.

`VlmBackend` is what the pipeline needs from a model: greedy generation with the logits of
every answer token (for the gate), the attention of the last input position to the first
image's tokens at one decoder layer, plain or weighted by the answer's gradient (for ViCrop),
and token / FLOP accounting.
`TransformersVlm` implements it for image-text-to-text models in transformers (LLaVA-1.5,
LLaVA-NeXT, Gemma 3 and 4, Qwen2/2.5/3-VL, Idefics3/SmolVLM), through the model's own processor,
chat template and image-token handling; where each family keeps the tokens of the whole frame,
and their grid, is its adapter's business (colvlm_models/families.py). Images come in as the
edge sends them: (H, W, 3) uint8 BGR, or as `VisualTokens`: an image's visual tokens computed
elsewhere (the edge's vision tower, through the token-layer codec), which the backend puts
into the image's positions of the language model's input embeddings, as the model itself does
with the tokens of pixels. LiteVLM's accelerations (`Acceleration`: visual-token selection,
speculative decoding, int8 weights; colvlm_models/accelerate.py) are options of the backend.

Backends know nothing about gates, crops or the wire. The contract lives in
colvlm_models/backend.py, the visual-token path in vlm_tokens.py and the accelerated decoding
in vlm_accelerated.py (mixins of `TransformersVlm`).
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
import os
from pathlib import Path
import re
import time

import numpy as np

from colvlm_models.accelerate import Acceleration, answer_length
from colvlm_models.backend import (  # noqa: F401  the project imports these from here
    DTYPES,
    TOKEN_SPLITS,
    Captured,
    Generation,
    ModelLoadError,
    VisualTokens,
    VlmBackend,
)
from colvlm_models.families import family_for, fit_grid, load_processor
from colvlm_models.vlm_accelerated import AcceleratedDecoding
from colvlm_models.vlm_tokens import VisualTokenPath
from colvlm_msgs.constants import first_line

LOG = logging.getLogger('colvlm.vlm')
ALLOW_DOWNLOAD_ENV = 'COLVLM_ALLOW_DOWNLOAD'  # '1': a hub id may be downloaded
_HUB_ID = re.compile(r'[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?')


def resolve_model(model: str) -> str:
    """The folder to load `model` from: '' or 'bundled' is the shipped tiny VLM; a path is a
    folder that must exist; a hub id ('org/name') is looked up in the local hub cache only,
    unless COLVLM_ALLOW_DOWNLOAD=1 (a robot with no internet is the normal case: an offline
    look-up would retry for minutes). ModelLoadError in one line otherwise, before loading."""
    if model in ('', 'bundled'):
        from colvlm_models.tiny_vlm import bundled_model_path
        return str(bundled_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    looks_like_path = model.startswith(('/', '.', '~')) or not _HUB_ID.fullmatch(model)
    if path.exists() or looks_like_path:
        what = 'not a folder' if path.exists() else 'no such folder'
        raise ModelLoadError(f'model {model!r}: {what} (a model is a local folder, '
                             "'bundled' or a hub id such as 'org/name')")
    if os.environ.get(ALLOW_DOWNLOAD_ENV) == '1':
        return model
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, local_files_only=True)
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), a bad id
        raise ModelLoadError(f'model {model!r} is not a local folder nor in the local hub '
                             f'cache, and downloads are off: pass --allow-download or set '
                             f'{ALLOW_DOWNLOAD_ENV}=1 to fetch it') from None


def _matmul_params(decoder, input_embeddings) -> int:
    """The decoder's parameters that each position multiplies by, for 2 x N FLOPs: all but
    lookup tables (Gemma 4's per-layer embeddings: about the decoder's size by default); the
    input embedding stays, standing for the LM head that shares or mirrors it."""
    import torch

    lookups = {id(p) for module in decoder.modules()
               if isinstance(module, torch.nn.Embedding) and module is not input_embeddings
               for p in module.parameters()}
    return sum(p.numel() for p in decoder.parameters() if id(p) not in lookups)


class TransformersVlm(VisualTokenPath, AcceleratedDecoding, VlmBackend):
    """A transformers image-text-to-text model with its AutoProcessor."""

    def __init__(self, model: str = 'bundled', *, device: str = 'cpu', dtype: str = 'float32',
                 max_new_tokens: int = 8, attention: bool = True, progress: bool = True,
                 image_size: tuple[int, int] | None = None,
                 acceleration: Acceleration | None = None) -> None:
        if dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f'max_new_tokens must be an int >= 1, got {max_new_tokens!r}')
        import torch
        from transformers import AutoModelForImageTextToText
        from transformers.utils import logging as hf_logging

        import colvlm_models.glyph_tower  # noqa: F401  registers the bundled tower's classes

        path = resolve_model(model)
        self.model_id = model if model not in ('', 'bundled') else Path(path).name
        self.model_path = path  # its colvlm.yaml holds the model's settings (settings.py)
        self._torch = torch
        self.device = torch.device(device)
        if progress:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()
        try:
            self.processor = load_processor(path)
            # Eager attention is the only implementation that returns attention weights.
            self.model = AutoModelForImageTextToText.from_pretrained(
                path, dtype=getattr(torch, dtype),
                attn_implementation='eager' if attention else 'sdpa').to(self.device).eval()
        # ImportError: a processor that needs a package colvlm does not install (SmolVLM's
        # num2words), named in the message.
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as error:
            first = first_line(error, with_type=False)
            raise ModelLoadError(f'cannot load model {model!r} ({path}): {first}') from None
        self.tokenizer = getattr(self.processor, 'tokenizer', self.processor)
        self.max_new_tokens = max_new_tokens
        config = self.model.config
        text_config = config.get_text_config()
        self.num_layers = int(text_config.num_hidden_layers)
        self.image_token_id = int(getattr(config, 'image_token_id', None)
                                  or config.image_token_index)
        self.family = family_for(config, self.processor, self.image_token_id)
        language_model = self.model.get_decoder() if hasattr(self.model, 'get_decoder') \
            else self.model.language_model
        self._decoder_params = _matmul_params(language_model, self.model.get_input_embeddings())
        self._language_model = language_model
        self.image_size, self.grid = self._probe_geometry(image_size)
        self.acceleration = acceleration or Acceleration()
        self._draft = None
        self._draft_params = 0
        self._set_up_acceleration(path, dtype, attention)

    # -- model geometry ---------------------------------------------------------------------
    def _probe_geometry(self, image_size) -> tuple[tuple[int, int], tuple[int, int]]:
        """Encoder input size and token grid, read off the processor's output for one image.

        Fixed-resolution processors (CLIP's) name their input size; for dynamic-resolution
        ones (Qwen2-VL) pass `image_size`, the global frame size the edge sends (default 336).
        """
        processor = self.processor.image_processor
        crop = dict(getattr(processor, 'crop_size', None) or {})
        if image_size is not None:
            width, height = (int(v) for v in image_size)
        elif crop.get('width') and crop.get('height'):
            width, height = int(crop['width']), int(crop['height'])
        else:
            width = height = 336
        inputs = self._inputs([np.zeros((height, width, 3), np.uint8)], 'x')
        self.tokens_per_image = int((inputs['input_ids'][0] == self.image_token_id).sum())
        try:
            _, (rows, cols) = self.family.image_layout(inputs, 1)
        except (ValueError, KeyError) as error:
            raise ModelLoadError(f'model {self.model_id!r} ({self.family.name} family): '
                                 f'{first_line(error, with_type=False)}; ViCrop cannot place '
                                 'its image tokens') from None
        return (width, height), (rows, cols)

    # -- prompts ----------------------------------------------------------------------------
    def _inputs(self, images: Sequence[np.ndarray], question: str) -> dict:
        content = [{'type': 'image'} for _ in images] + [{'type': 'text', 'text': question}]
        messages = [{'role': 'user', 'content': content}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        rgb = [np.ascontiguousarray(image[:, :, ::-1]) for image in images]
        inputs = self.processor(images=rgb, text=prompt, return_tensors='pt')
        return {k: v.to(self.device) if hasattr(v, 'to') else v for k, v in inputs.items()}

    # -- image tokens -----------------------------------------------------------------------
    def _image0_positions(self, inputs: dict, n_images: int) -> tuple[np.ndarray, tuple]:
        """(N,) positions of image 0's whole-frame tokens and the (rows, cols) they form in
        this call (a dynamic-resolution family's grid follows the image's size)."""
        if self.family.needs and self.family.needs not in inputs:
            raise ValueError(f'model {self.model_id!r}: no {self.family.needs} in its inputs '
                             f'to read the image grid from')
        return self.family.image_layout(inputs, n_images)

    def _frame_span(self, image) -> tuple[float, float, float, float]:
        """The part of `image` (pixels, or VisualTokens of an image_size frame) that its
        token grid shows (Family.frame_span)."""
        if isinstance(image, VisualTokens):
            return self.family.frame_span(*self.image_size)
        height, width = image.shape[:2]
        return self.family.frame_span(width, height)

    def _to_backend_grid(self, attention: np.ndarray, grid: tuple[int, int],
                         image) -> np.ndarray:
        """(heads, R*C): attention over image 0's own grid, laid over the whole frame on the
        backend's grid (what ViCrop maps onto the global frame)."""
        return fit_grid(attention, grid, self.grid, self._frame_span(image))

    def _last_position_attention(self, attentions, layer: int, inputs: dict,
                                 images: Sequence) -> np.ndarray:
        if not 0 <= layer < self.num_layers:
            raise ValueError(f'attention layer must be in 0..{self.num_layers - 1}, got {layer}')
        weights = attentions[layer]  # (1, heads, L, L)
        if weights is None:
            raise RuntimeError(f'model {self.model_id!r} returned no attention weights; load it '
                               'with attention=True (eager attention)')
        positions, grid = self._image0_positions(inputs, len(images))
        attention = weights[0, :, -1, positions].float().cpu().numpy()  # (heads, N)
        return self._to_backend_grid(attention, grid, images[0])

    def frame_tokens(self, image: np.ndarray,
                     prompt: str = 'Describe the image.') -> tuple[np.ndarray, tuple, tuple]:
        """((N, hidden) float32, (rows, cols), span): what the language model is given at the
        positions ViCrop reads (image 0's whole-frame tokens, row-major on the family's own
        grid for this image, showing `span` of it: Family.frame_span) for a one-image prompt;
        the decoder itself does not run."""
        captured = {}

        def before(module, args, kwargs):
            captured['embeds'] = kwargs.get('inputs_embeds')
            raise Captured

        inputs = self._inputs([image], prompt)
        handle = self._language_model.register_forward_pre_hook(before, with_kwargs=True)
        try:
            with self._torch.inference_mode():
                self.model(**inputs, return_dict=True)
        except Captured:
            pass
        finally:
            handle.remove()
        if captured.get('embeds') is None:
            raise NotImplementedError(f'model {self.model_id!r} does not hand its decoder '
                                      'input embeddings; its image tokens cannot be read')
        positions, grid = self._image0_positions(inputs, 1)
        tokens = captured['embeds'][0, positions].float().cpu().numpy()
        return tokens, grid, self._frame_span(image)

    # -- VlmBackend -------------------------------------------------------------------------
    def generate(self, images: Sequence[np.ndarray], question: str, *,
                 attention_layer: int | None = None,
                 max_new_tokens: int | None = None) -> Generation:
        limit = max_new_tokens or self.max_new_tokens  # per call: the backend is shared
        if self.acceleration.custom_decode:
            return self._generate_accelerated(images, question, attention_layer, limit)
        torch = self._torch
        with torch.inference_mode():
            if any(isinstance(image, VisualTokens) for image in images):
                # Filling the embeddings (the projector included) is part of the pass's time;
                # generate() starts from them and keeps input_ids in its output.
                started = time.perf_counter()
                inputs = self._embedded_inputs(images, question)
            else:
                inputs = self._inputs(images, question)
                started = time.perf_counter()
            input_ids = inputs['input_ids']
            output = self.model.generate(
                **inputs, max_new_tokens=limit, do_sample=False,
                output_logits=True, output_attentions=attention_layer is not None,
                return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id)
        seconds = time.perf_counter() - started
        new_tokens = output.sequences[0, input_ids.shape[1]:]
        answer_steps = answer_length(new_tokens.tolist(), self._eos())
        # An empty answer is judged by the confidence of its EOS: the gate needs one step.
        logits = torch.stack([step[0] for step in output.logits[:max(answer_steps, 1)]])
        text = self.tokenizer.decode(new_tokens[:answer_steps], skip_special_tokens=True).strip()
        attention = None
        if attention_layer is not None:
            attention = self._last_position_attention(output.attentions[0], attention_layer,
                                                      inputs, images)
        n_input = int(input_ids.shape[1])
        n_output = int(len(new_tokens))
        return Generation(
            text=text, logits=logits.float().cpu().numpy(), input_tokens=n_input,
            image_tokens=int((input_ids[0] == self.image_token_id).sum()),
            output_tokens=n_output, flops=2.0 * self._decoder_params * (n_input + n_output),
            seconds=seconds, attention=attention)

    def image_attention(self, image: np.ndarray, prompt: str, layer: int) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            if isinstance(image, VisualTokens):
                inputs = self._embedded_inputs([image], prompt)
                input_ids = inputs.pop('input_ids')  # the forward takes ids or embeddings
            else:
                inputs = self._inputs([image], prompt)
                input_ids = inputs['input_ids']
            output = self.model(**inputs, output_attentions=True, return_dict=True,
                                logits_to_keep=1)
        return self._last_position_attention(output.attentions, layer,
                                             {**inputs, 'input_ids': input_ids}, [image])

    def gradient_attention(self, image: np.ndarray, prompt: str, layer: int) -> np.ndarray:
        # Zhang et al., "MLLMs Know Where to Look" (ICLR 2025, arXiv:2502.17422), its
        # gradient-weighted attention (grad-att): A~ = A ⊙ ReLU(∂v/∂A), where A is the
        # attention of the starting answer position (the last input position) to the image
        # tokens, v = log p(y*) the log-probability of the model's own first answer token
        # (the arg-max of the first answer logits) and the ReLU keeps the attention that
        # raises it. Heads are averaged, as for rel-att, at the one layer ViCrop reads.
        torch = self._torch
        if not 0 <= layer < self.num_layers:
            raise ValueError(f'attention layer must be in 0..{self.num_layers - 1}, got {layer}')
        if self.acceleration.quantize == 'int8':
            raise ValueError("vicrop.method 'grad_att' needs gradients through the decoder; "
                             "quantize 'int8' layers have none")
        with torch.no_grad():
            if isinstance(image, VisualTokens):
                inputs = self._embedded_inputs([image], prompt)
                input_ids = inputs.pop('input_ids')
                leaf = 'inputs_embeds'
            else:
                inputs = self._inputs([image], prompt)
                input_ids = inputs['input_ids']
                leaf = 'pixel_values'
        # The input, not the weights, is the graph's leaf: torch.autograd.grad below reaches
        # the attention through it whether or not the parameters require grad, and writes no
        # .grad anywhere; the model's parameters are left as they were.
        inputs[leaf] = inputs[leaf].detach().clone().requires_grad_(True)
        with torch.inference_mode(False), torch.enable_grad():
            output = self.model(**inputs, output_attentions=True, return_dict=True,
                                logits_to_keep=1)
            weights = output.attentions[layer]  # (1, heads, L, L)
            if weights is None or not weights.requires_grad:
                raise RuntimeError(f'model {self.model_id!r} gave no differentiable attention '
                                   f'at layer {layer}; grad_att needs eager attention')
            answer = torch.log_softmax(output.logits[0, -1].float(), dim=-1).max()
            (gradient,) = torch.autograd.grad(answer, weights)
        positions, grid = self._image0_positions({**inputs, 'input_ids': input_ids}, 1)
        attention = weights.detach()[0, :, -1, positions].float()  # (heads, N)
        slope = gradient[0, :, -1, positions].float()  # (heads, N) ∂v/∂A
        weighted = (attention * slope.clamp(min=0)).mean(dim=0)  # (N,) row-major grid
        return self._to_backend_grid(weighted[None].cpu().numpy(), grid,
                                     image).reshape(self.grid)

    def _eos(self) -> set[int]:
        return set(np.atleast_1d(self.model.generation_config.eos_token_id or []).tolist())
