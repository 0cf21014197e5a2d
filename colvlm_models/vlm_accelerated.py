"""LiteVLM's accelerations in `TransformersVlm`: checked against the model at load, then
visual-token selection (FastV) and speculative decoding through accelerate.greedy_decode, with
the same greedy answer contract as the model's own generate().

A mixin: it reads the backend's `model`, `family`, `acceleration`, `device`, `_torch`,
`model_id`, `num_layers`, `_language_model`, `_decoder_params`, `image_token_id`, `tokenizer`,
`_inputs`, `_embedded_inputs`, `_image0_positions`, `_to_backend_grid` and `_eos`
(colvlm_models/vlm.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import time

import numpy as np

from colvlm_models.accelerate import (
    DraftProposer,
    answer_length,
    greedy_decode,
    quantize_int8,
    select_image_positions,
)
from colvlm_models.backend import Captured, Generation, ModelLoadError, VisualTokens
from colvlm_msgs.constants import first_line


class AcceleratedDecoding:
    def _set_up_acceleration(self, path: str, dtype: str, attention: bool) -> None:
        """Check the accelerations against this model and load what they need; ValueError
        naming the parameter, ModelLoadError for a draft that cannot be loaded."""
        acc = self.acceleration
        if acc.custom_decode and not self.family.custom_decode:
            # The custom loop decodes from embeddings with 1-D positions and a causal mask:
            # Qwen-VL's 3-D RoPE, Gemma's image masks and Idefics3's connector are not
            # followed there.
            what = 'tokens.keep_ratio' if acc.selects_tokens else 'decode.speculative'
            raise ValueError(f'{what}: not supported for model {self.model_id!r} '
                             f'({self.family.name} family); LLaVA-style models only')
        if acc.selects_tokens:
            layers = getattr(self._language_model, 'layers', None)
            if layers is None or not attention:
                raise ValueError(f'tokens.keep_ratio: model {self.model_id!r} has no decoder '
                                 'layers with eager attention to rank image tokens by')
            if acc.select_layer >= self.num_layers:
                raise ValueError(f'tokens.select_layer must be in 0..{self.num_layers - 1} for '
                                 f'model {self.model_id!r}, got {acc.select_layer}')
            self._layer_params = sum(p.numel() for p in layers[0].parameters())
        if acc.quantize == 'int8' and self.device.type != 'cpu':
            raise ValueError(f'quantize int8 runs on the CPU only, not on {self.device}')
        if acc.speculative == 'draft':
            self._draft = self._load_draft(acc.draft_model or f'{Path(path)}-draft', dtype)
        if acc.quantize == 'int8':
            quantize_int8(self._language_model)
            if self._draft is not None:
                quantize_int8(self._draft.get_decoder())

    def _load_draft(self, draft_path: str, dtype: str):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
        torch = self._torch
        try:
            try:
                draft = AutoModelForImageTextToText.from_pretrained(
                    draft_path, dtype=getattr(torch, dtype), attn_implementation='sdpa')
            except ValueError:  # a text-only draft
                draft = AutoModelForCausalLM.from_pretrained(
                    draft_path, dtype=getattr(torch, dtype), attn_implementation='sdpa')
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            first = first_line(error, with_type=False)
            raise ModelLoadError(f'cannot load decode.draft_model {draft_path!r}: '
                                 f'{first}') from None
        ours, theirs = self.model.config.get_text_config(), draft.config.get_text_config()
        for name in ('vocab_size', 'hidden_size'):
            if getattr(ours, name) != getattr(theirs, name):
                raise ValueError(f'decode.draft_model {draft_path!r}: its {name} '
                                 f"{getattr(theirs, name)} is not the model's "
                                 f'{getattr(ours, name)}; a draft shares the tokenizer and '
                                 'the embedding space')
        draft = draft.to(self.device).eval()
        self._draft_params = sum(p.numel() for p in draft.get_decoder().parameters())
        return draft

    def _generate_accelerated(self, images: Sequence, question: str,
                              attention_layer: int | None, limit: int) -> Generation:
        """generate() with token selection and/or speculative decoding: the same greedy
        answer contract, from the prompt's embeddings, through accelerate.greedy_decode."""
        torch = self._torch
        acc = self.acceleration
        if attention_layer is not None and not 0 <= attention_layer < self.num_layers:
            raise ValueError(f'attention layer must be in 0..{self.num_layers - 1}, got '
                             f'{attention_layer}')
        with torch.inference_mode():
            if any(isinstance(image, VisualTokens) for image in images):
                started = time.perf_counter()
                embedded = self._embedded_inputs(images, question)
            else:
                inputs = self._inputs(images, question)
                started = time.perf_counter()
                embedded = self._embedded_inputs(images, question, inputs)
            input_ids = embedded['input_ids']  # (1, L)
            embeds = embedded['inputs_embeds']  # (1, L, hidden)
            full_length = int(input_ids.shape[1])
            kept = torch.arange(full_length, device=self.device)  # (L',) original positions
            selection_flops = 0.0
            if acc.selects_tokens:
                kept = self._select_tokens(embeds, input_ids)
                embeds = embeds[:, kept]
                selection_flops = 2.0 * self._layer_params * (acc.select_layer + 1) * full_length
            context = None
            if acc.speculative == 'prompt_lookup':
                context = input_ids[0][input_ids[0] != self.image_token_id].tolist()
            decoded = greedy_decode(
                self.model, embeds, kept[None], max_new_tokens=limit,
                eos=self._eos(), context=context,
                draft=DraftProposer(self._draft) if self._draft is not None else None,
                draft_tokens=acc.draft_tokens, output_attentions=attention_layer is not None)
        seconds = time.perf_counter() - started
        answer_steps = answer_length(decoded.tokens, self._eos())
        logits = torch.stack(decoded.logits[:max(answer_steps, 1)])
        text = self.tokenizer.decode(decoded.tokens[:answer_steps],
                                     skip_special_tokens=True).strip()
        attention = None
        if attention_layer is not None:
            attention = self._kept_attention(decoded.attentions, attention_layer,
                                             {**embedded, 'input_ids': input_ids}, kept,
                                             images[0])
        kept_ids = input_ids[0, kept]
        n_input, n_output = int(len(kept)), len(decoded.tokens)
        flops = 2.0 * self._decoder_params * (n_input + decoded.positions) + selection_flops
        flops += 2.0 * self._draft_params * decoded.draft_positions
        return Generation(
            text=text, logits=logits.float().cpu().numpy(), input_tokens=n_input,
            image_tokens=int((kept_ids == self.image_token_id).sum()), output_tokens=n_output,
            flops=flops, seconds=seconds, attention=attention,
            drafted_tokens=decoded.drafted, accepted_tokens=decoded.accepted)

    def _select_tokens(self, embeds, input_ids):
        """(L',) original positions kept: every text position and the image tokens the last
        prompt position attends to most at decoder layer tokens.select_layer (FastV); the
        decoder's first select_layer + 1 layers run on the full prompt to rank them."""
        torch = self._torch
        layer = self.acceleration.select_layer
        captured = {}

        def hook(module, args, output):
            captured['weights'] = output[1]  # (1, heads, L, L) with eager attention
            raise Captured

        attention = self._language_model.layers[layer].self_attn
        handle = attention.register_forward_hook(hook)
        length = int(input_ids.shape[1])
        try:
            self._language_model(inputs_embeds=embeds,
                                 position_ids=torch.arange(length, device=self.device)[None],
                                 output_attentions=True, use_cache=False)
        except Captured:
            pass
        finally:
            handle.remove()
        weights = captured.get('weights')
        if weights is None:
            raise RuntimeError(f'model {self.model_id!r} returned no attention weights at '
                               f'layer {layer}; token selection needs eager attention')
        is_image = (input_ids[0] == self.image_token_id)
        image_positions = is_image.nonzero().flatten().cpu().numpy()
        scores = weights[0, :, -1, :].float().sum(dim=0).cpu().numpy()  # (L,) over heads
        chosen = select_image_positions(scores[image_positions], image_positions,
                                        self.acceleration.keep_ratio)
        keep = ~is_image.cpu()
        keep[torch.from_numpy(chosen)] = True
        return keep.nonzero().flatten().to(self.device)

    def _kept_attention(self, attentions, layer: int, inputs: dict, kept,
                        image) -> np.ndarray:
        """(heads, N): the last position's attention to image 0's tokens on the full grid;
        tokens that selection dropped get 0 (ViCrop's RoI is placed among the kept ones)."""
        weights = attentions[layer]  # (1, heads, L', L')
        if weights is None:
            raise RuntimeError(f'model {self.model_id!r} returned no attention weights; load it '
                               'with attention=True (eager attention)')
        row = weights[0, :, -1, :].float().cpu().numpy()  # (heads, L')
        grid_positions, grid = self._image0_positions(inputs, 1)  # (N,) original positions
        index = {int(p): k for k, p in enumerate(grid_positions)}
        full = np.zeros((row.shape[0], len(grid_positions)), np.float32)
        for column, position in enumerate(kept.tolist()):
            if position in index:
                full[:, index[position]] = row[:, column]
        return self._to_backend_grid(full, grid, image)
