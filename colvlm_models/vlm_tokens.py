"""The visual-token path of `TransformersVlm`: an image's tokens at the projector's input
('tower') or output ('projector'), and a prompt's input embeddings with image positions filled
from given `VisualTokens` (the edge's tower, through the token-layer codec).

A mixin: it reads the backend's `model`, `processor`, `device`, `_torch`, `model_id`,
`image_size`, `image_token_id`, `tokens_per_image` and `_inputs` (colvlm_models/vlm.py).
LLaVA-style models only: a family whose image positions are not the projector's rows as they
are (LLaVA-NeXT's tiles, Gemma's pooled tokens) is refused with NotImplementedError.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from colvlm_models.backend import TOKEN_SPLITS, Captured, VisualTokens


class VisualTokenPath:
    def _projector(self):
        model = self.model
        projector = getattr(getattr(model, 'model', model), 'multi_modal_projector', None)
        if projector is None:
            raise NotImplementedError(f'model {self.model_id!r} has no multi_modal_projector; '
                                      'the visual-token path needs a LLaVA-style model')
        return projector

    def _image_features(self, pixel_values, split: str):
        """(n_images, N, D) features at `split` for a batch of processed pixels.

        Hooks on the projector read its input ('tower') or output ('projector'), so whatever
        the family does before it (feature layer, CLS removal) is the model's own code; for
        'tower' the pass stops at the projector. Families whose image positions are not
        filled with the projector output as is (LLaVA-NeXT's tiles) are refused."""
        if split not in TOKEN_SPLITS:
            raise ValueError(f'split must be one of {TOKEN_SPLITS}, got {split!r}')
        projector = self._projector()
        captured = {}

        def before(module, args):
            captured['tower'] = args[0]
            if split == 'tower':
                raise Captured

        def after(module, args, output):
            captured['projector'] = output

        handles = [projector.register_forward_pre_hook(before),
                   projector.register_forward_hook(after)]
        try:
            self.model.get_image_features(pixel_values=pixel_values)
        except Captured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        features = captured[split]
        expected = (int(pixel_values.shape[0]), self.tokens_per_image)
        if features.dim() != 3 or tuple(features.shape[:2]) != expected:
            raise NotImplementedError(
                f'model {self.model_id!r}: the projector sees {tuple(features.shape)} for '
                f'{expected[0]} image(s) of {expected[1]} tokens; the visual-token path needs '
                'one projector row per image position')
        return features

    def visual_tokens(self, image: np.ndarray, split: str = 'tower') -> np.ndarray:
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        pixels = self.processor.image_processor(images=[rgb], return_tensors='pt')
        pixel_values = pixels['pixel_values'].to(self.device, self.model.dtype)
        with self._torch.inference_mode():
            features = self._image_features(pixel_values, split)
        return features[0].float().cpu().numpy()

    def _embedded_inputs(self, images: Sequence, question: str,
                         inputs: dict | None = None) -> dict:
        """input_ids, attention_mask and inputs_embeds: the prompt's embeddings with each
        image's positions filled by its projected tokens, given (VisualTokens) or computed
        from pixels (`inputs`: the processor's output for them, when already made). Call
        under inference_mode."""
        torch = self._torch
        width, height = self.image_size
        blank = np.zeros((height, width, 3), np.uint8)
        if inputs is None:
            inputs = self._inputs([blank if isinstance(i, VisualTokens) else i for i in images],
                                  question)
        input_ids = inputs['input_ids']
        rows = [k for k, image in enumerate(images) if not isinstance(image, VisualTokens)]
        from_pixels = iter(self._image_features(inputs['pixel_values'][rows], 'projector')
                           if rows else ())
        hidden = int(self.model.config.get_text_config().hidden_size)
        pieces = []
        for k, image in enumerate(images):
            if not isinstance(image, VisualTokens):
                pieces.append(next(from_pixels))
                continue
            tokens = np.asarray(image.tokens, np.float32)
            if tokens.ndim != 2 or tokens.shape[0] != self.tokens_per_image or (
                    image.split == 'projector' and tokens.shape[1] != hidden):
                raise ValueError(f'image {k}: visual tokens of shape {tokens.shape} do not fit '
                                 f'{self.tokens_per_image} tokens at split {image.split!r}')
            features = torch.from_numpy(tokens).to(self.device, self.model.dtype)
            if image.split == 'tower':
                try:
                    features = self._projector()(features[None])[0]
                except RuntimeError as error:
                    raise ValueError(f'image {k}: tower tokens of shape {tokens.shape} do not '
                                     f'fit the projector: {error}') from None
            pieces.append(features)
        features = torch.cat(pieces)  # (images * N, hidden)
        embeds = self.model.get_input_embeddings()(input_ids)  # (1, L, hidden)
        positions = input_ids[0] == self.image_token_id
        embeds[0, positions] = features.to(embeds.dtype)
        return {'input_ids': input_ids, 'attention_mask': inputs['attention_mask'],
                'inputs_embeds': embeds}

