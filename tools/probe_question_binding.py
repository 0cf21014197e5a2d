"""Does the bundled model's decoder bind the question to the image? A diagnostic for the
global colour and presence answers (issue 5), in two parts:

1. **Pairs**: presence questions come in pairs about one scene (a present object and an
   absent one that shares its colour or shape). A model that reads the question answers them
   differently; one that answers from the image alone gives both the same answer, which
   scores exactly 50%. Likewise for the colour questions about one scene's shapes.
2. **Training probe** (`--train-minutes`): with the vision tower frozen (its tokens already
   separate colour x kind per cell: see the view probe), train the projector and decoder on
   1-image presence and colour questions about global frames from the bundled weights, in a
   prompt format: `image-first` (LLaVA-1.5's, 'USER: <image>\\n{q} ASSISTANT:', the chat
   template of the first two bundled copies) or `question-first` ('USER: {q}\\n<image>\\n{q}
   ASSISTANT:', so that the image tokens can attend to the question; the chat template from
   the third copy on). First-token accuracy on held-out scenes is logged as it trains.

Nothing is saved; the printout is the result.

    python -m tools.probe_question_binding --pairs 120
    python -m tools.probe_question_binding --train-minutes 60 --steps 6475 --format question-first
    python -m tools.probe_question_binding --train-minutes 60 --steps 6475 --format image-first
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from colvlm_bench.glyphvqa.questions import questions_for_scene
from colvlm_bench.glyphvqa.scene import render_scene
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_msgs.image_codec import decode_image

KINDS = ('presence', 'color')
FORMATS = {'image-first': 'USER: {image}\n{q} ASSISTANT:',
           'question-first': 'USER: {q}\n{image}\n{q} ASSISTANT:'}
TRAIN_STREAM, TEST_STREAM, PAIR_STREAM = 31337, 42424, 515  # used by no other tool


def global_frame(encoder: GlobalEncoder, scene) -> np.ndarray:
    """The global frame as the server decodes it: (h, w, 3) uint8 BGR."""
    return decode_image(encoder.encode(scene.image).data)


def pairs(vlm, encoder: GlobalEncoder, count: int) -> dict:
    same = pairs_seen = one_colour = colour_scenes = 0
    for index in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([PAIR_STREAM, index]))
        scene = render_scene(rng)
        pixels = global_frame(encoder, scene)
        questions = questions_for_scene(scene, rng, 'scene.png', kinds=KINDS)
        presence = [vlm.generate([pixels], q.question).text for q in questions
                    if q.kind == 'presence']
        for k in range(0, len(presence) - 1, 2):  # (present, absent) in turn
            same += presence[k] == presence[k + 1]
            pairs_seen += 1
        colours = [vlm.generate([pixels], q.question).text for q in questions
                   if q.kind == 'color']
        if len(colours) > 1:
            one_colour += len(set(colours)) == 1
            colour_scenes += 1
    return {'presence_pairs_same_answer': f'{same}/{pairs_seen}',
            'colour_scenes_one_answer': f'{one_colour}/{colour_scenes}'}


class Probe:
    """Projector + decoder training on precomputed tower tokens in one prompt format."""

    def __init__(self, vlm, encoder: GlobalEncoder, prompt: str, scenes: int,
                 test_scenes: int) -> None:
        self.vlm, self.prompt = vlm, prompt
        self.tokenizer = vlm.tokenizer
        self.image_tokens = vlm.grid[0] * vlm.grid[1]
        self.train = self._scenes(encoder, TRAIN_STREAM, scenes)
        self.test = [(f, q) for f, qs in self._scenes(encoder, TEST_STREAM, test_scenes)
                     for q in qs]
        self.projector = vlm._projector()
        self.embed = vlm.model.get_input_embeddings()

    def _scenes(self, encoder, stream: int, count: int) -> list:
        held = []
        for index in range(count):
            rng = np.random.default_rng(np.random.SeedSequence([stream, index]))
            scene = render_scene(rng)
            inputs = self.vlm._inputs([global_frame(encoder, scene)], '')
            with torch.inference_mode():  # the tower is frozen: its tokens once per scene
                tokens = self.vlm._image_features(inputs['pixel_values'], 'tower')[0].clone()
            held.append((tokens, questions_for_scene(scene, rng, 'scene.png', kinds=KINDS)))
        return held

    def batch(self, samples, answers: bool = True):
        """inputs_embeds, attention_mask, labels; left padded, image tokens projected."""
        tokenizer, rows, labels = self.tokenizer, [], []
        image = self.vlm.processor.image_token * self.image_tokens
        for _, question in samples:
            prompt = tokenizer(self.prompt.format(image=image, q=question.question))['input_ids']
            answer = tokenizer(question.answers[0], add_special_tokens=False)['input_ids'] \
                + [tokenizer.eos_token_id] if answers else []
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        length = max(map(len, rows))
        ids = torch.full((len(rows), length), tokenizer.pad_token_id)
        target = torch.full((len(rows), length), -100)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for k, (row, label) in enumerate(zip(rows, labels, strict=True)):
            ids[k, length - len(row):] = torch.tensor(row)
            target[k, length - len(label):] = torch.tensor(label)
            mask[k, length - len(row):] = 1
        embeds = self.embed(ids)
        projected = self.projector(torch.stack([tokens for tokens, _ in samples]))
        where = (ids == self.vlm.image_token_id)[..., None].expand_as(embeds)
        return embeds.masked_scatter(where, projected.to(embeds.dtype)), mask, target

    def evaluate(self) -> dict:
        model = self.vlm.model
        model.eval()
        right = {kind: [0, 0] for kind in KINDS}
        with torch.no_grad():
            for start in range(0, len(self.test), 64):
                chunk = self.test[start:start + 64]
                embeds, mask, _ = self.batch(chunk, answers=False)
                first = model(inputs_embeds=embeds, attention_mask=mask).logits[:, -1]
                for (_, question), token in zip(chunk, first.argmax(-1).tolist(),
                                                strict=True):
                    said = self.tokenizer.decode([token]).strip()
                    right[question.kind][0] += said == question.answers[0]
                    right[question.kind][1] += 1
        model.train()
        return {kind: round(ok / n, 3) for kind, (ok, n) in right.items()}

    def run(self, minutes: float, lr: float, batch: int, seed: int, steps: int = 0) -> None:
        model = self.vlm.model
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        params = [*self.projector.parameters(), *model.get_decoder().parameters(),
                  *model.get_output_embeddings().parameters(), *self.embed.parameters()]
        for parameter in params:
            parameter.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        rng = np.random.default_rng(seed)
        print(json.dumps({'step': 0, 'eval': self.evaluate()}), flush=True)
        step, started = 0, time.monotonic()
        model.train()
        while time.monotonic() - started < minutes * 60 and not (steps and step >= steps):
            samples = []
            for _ in range(batch):
                tokens, questions = self.train[int(rng.integers(len(self.train)))]
                samples.append((tokens, questions[int(rng.integers(len(questions)))]))
            embeds, mask, target = self.batch(samples)
            loss = model(inputs_embeds=embeds, attention_mask=mask, labels=target).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            if step % 200 == 0:
                print(json.dumps({'step': step, 'loss': round(loss.item(), 4),
                                  'minutes': round((time.monotonic() - started) / 60, 1),
                                  'eval': self.evaluate()}), flush=True)
        print(json.dumps({'step': step, 'final': self.evaluate()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='bundled')
    parser.add_argument('--pairs', type=int, default=0, help='scenes for part 1; 0 = skip')
    parser.add_argument('--train-minutes', type=float, default=0.0, help='0 = skip part 2')
    parser.add_argument('--steps', type=int, default=0,
                        help='stop part 2 after this many steps too (a budget that does not '
                             'depend on the machine); 0 = minutes only')
    parser.add_argument('--format', choices=sorted(FORMATS), default='question-first')
    parser.add_argument('--scenes', type=int, default=700, help='training scenes')
    parser.add_argument('--test-scenes', type=int, default=150)
    parser.add_argument('--lr', type=float, default=3e-4)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from colvlm_models.vlm import TransformersVlm

    vlm = TransformersVlm(args.model, progress=False, attention=False)
    width, height = vlm.image_size
    encoder = GlobalEncoder(GlobalEncoderConfig(width=width, height=height))  # the edge's
    if args.pairs:
        print(json.dumps(pairs(vlm, encoder, args.pairs)), flush=True)
    if args.train_minutes:
        probe = Probe(vlm, encoder, FORMATS[args.format], args.scenes, args.test_scenes)
        print(f'format {args.format}: {probe.prompt!r}', flush=True)
        probe.run(args.train_minutes, args.lr, args.batch, args.seed, args.steps)
    return 0


if __name__ == '__main__':
    sys.exit(main())
