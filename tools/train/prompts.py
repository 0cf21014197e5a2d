"""Prompts of the tiny LLaVA's VQA stages: a Glyph-VQA question drawn for a scene, the images
shown with it (global view; + a ViCrop-sized crop; + 2x2 tiles), and token ids with labels in
the chat template's format (answer tokens supervised, prompt ignored, left padding).

Contract: a sample is (views, question, answer, evidence cells or None); the model is not
needed here, only its processor.
"""

from __future__ import annotations

import numpy as np
import torch

from colvlm_bench.glyphvqa.questions import questions_for_scene
from colvlm_models import tiny_vlm

from .data import IGNORE, SceneViews, View
from .targets import target_cells

# Prompt formats of the VQA stages: (images per prompt, weight).
FORMATS = {'align': ((1, 0.6), (2, 0.4)), 'bind': ((1, 1.0),),
           'joint': ((1, 0.45), (2, 0.4), (5, 0.15))}
KIND_WEIGHTS = {'text': 0.35, 'color': 0.2, 'presence': 0.2, 'grounding': 0.15, 'count': 0.1}


def pixel_batch(processor, views: list[View]) -> torch.Tensor:
    """The model's own image processor on the views (BGR -> RGB first)."""
    images = [v.pixels[:, :, ::-1] for v in views]
    return processor.image_processor(images=images, return_tensors='pt')['pixel_values']


def draw_question(rng: np.random.Generator, views: SceneViews,
                  kind_weights: dict[str, float] | None = None):
    kind_weights = kind_weights or KIND_WEIGHTS
    kinds = list(kind_weights)
    weights = np.array([kind_weights[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    questions = questions_for_scene(views.scene, rng, 'scene.png', kinds=(kind,))
    return questions[int(rng.integers(0, len(questions)))]


def build_sample(rng: np.random.Generator, views: SceneViews, n_images: int,
                 kind_weights: dict[str, float] | None = None):
    """(image views, question text, answer text, the evidence box's share per cell of the
    global view or None)."""
    question = draw_question(rng, views, kind_weights)
    images = [views.global_view]
    if n_images == 2:
        objects = views.scene.objects
        if question.target is not None and rng.random() < 0.75:
            box = question.target
        elif rng.random() < 0.5:
            box = objects[int(rng.integers(0, len(objects)))].box
        else:
            box = None
        images.append(views.crop_around(rng, box))
    elif n_images == 5:
        images += views.tiles()
    cells = target_cells(question.target, views.scene.width, views.scene.height, views.size,
                         views.grid)
    return images, question.question, question.answers[0], cells


class PromptEncoder:
    """Token ids and labels for (n images, question, answer) in the chat template's format."""

    def __init__(self, processor, image_tokens: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_tokens = image_tokens
        self._cache: dict[tuple[int, str], list[int]] = {}

    def prompt_ids(self, n_images: int, question: str) -> list[int]:
        key = (n_images, question)
        if key not in self._cache:
            messages = [{'role': 'user', 'content': [{'type': 'image'}] * n_images
                         + [{'type': 'text', 'text': question}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            text = text.replace(tiny_vlm.IMAGE_TOKEN, tiny_vlm.IMAGE_TOKEN * self.image_tokens)
            self._cache[key] = self.tokenizer(text)['input_ids']
        return self._cache[key]

    def batch(self, samples, device) -> dict[str, torch.Tensor]:
        rows, labels = [], []
        for images, question, answer, *_ in samples:
            prompt = self.prompt_ids(len(images), question)
            target = self.tokenizer(answer, add_special_tokens=False)['input_ids'] \
                + [self.tokenizer.eos_token_id]
            rows.append(prompt + target)
            labels.append([IGNORE] * len(prompt) + target)
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        label = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        for k, (row, lab) in enumerate(zip(rows, labels, strict=True)):  # left padding
            ids[k, length - len(row):] = torch.tensor(row)
            mask[k, length - len(row):] = 1
            label[k, length - len(lab):] = torch.tensor(lab)
        return {'input_ids': ids.to(device), 'attention_mask': mask.to(device),
                'labels': label.to(device)}
