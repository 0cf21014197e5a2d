"""LiteVLM-style accelerations of one VLM pass (../shared/seeds/002): visual-token selection,
speculative greedy decoding and low precision.

- Token selection (FastV-style): the image tokens are ranked by the attention the last prompt
  position pays them at decoder layer k, computed by running the decoder's first k + 1 layers
  on the full prompt; the generation then runs on the prompt's embeddings with the other image
  positions removed, every kept position keeping its original RoPE position.
- Speculative decoding: a greedy loop that verifies proposed tokens (prompt lookup, or a
  smaller draft model sharing the tokenizer) with one forward of the model and keeps the
  longest prefix equal to the model's own argmax, so the tokens are those of plain greedy
  decoding. transformers' own assisted generation (`prompt_lookup_num_tokens`,
  `assistant_model`) cannot serve here: with LLaVA it proposes `<image>` tokens from the prompt
  (the forward then finds more image tokens than features), and started from `inputs_embeds`
  its first verification reads the prompt's logits instead of the candidates'.
- Low precision: dynamic int8 quantization of the decoder's Linear layers (torch.ao).

The module knows nothing of gates, crops or the wire; `TransformersVlm` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
import warnings

import numpy as np

from colvlm_msgs.param_fields import check_fields, parameter

SPECULATIVE = ('none', 'prompt_lookup', 'draft')  # not 'off': YAML reads it as false
QUANTIZE = ('none', 'int8')
LOOKUP_NGRAM = 2  # prompt lookup matches the last 2 tokens first, then the last 1


@dataclass(frozen=True)
class Acceleration:
    """Which accelerations a backend applies; every field is a server parameter."""

    quantize: str = parameter(
        'quantize', 'none', "'int8': dynamic int8 weights of the decoder's Linear layers (CPU; "
        'lossy)', choices=QUANTIZE)
    keep_ratio: float = parameter(
        'tokens.keep_ratio', 1.0, 'share of image tokens the language model keeps, ranked by '
        'attention (FastV; lossy below 1); 1 = all', min=0.01, max=1.0)
    select_layer: int = parameter(
        'tokens.select_layer', 0, '0-based decoder layer whose last-position attention ranks '
        'the image tokens', min=0, max=1000)
    speculative: str = parameter(
        'decode.speculative', 'none', "speculative greedy decoding (answers unchanged): "
        "'prompt_lookup' or a 'draft' model", choices=SPECULATIVE)
    draft_model: str = parameter(
        'decode.draft_model', '', "draft of decode.speculative 'draft': a local folder or hub "
        "id; '' = the '<model>-draft' folder beside the model")
    draft_tokens: int = parameter('decode.draft_tokens', 3, 'tokens proposed per verification',
                                  unit='tokens', min=1, max=64)

    def __post_init__(self) -> None:
        check_fields(self)

    def describe(self) -> str:
        """'' when nothing is on, else one clause for the server's ready line."""
        parts = []
        if self.selects_tokens:
            parts.append(f'image tokens kept {self.keep_ratio:g} (layer {self.select_layer})')
        if self.speculative != 'none':
            parts.append(f'speculative {self.speculative} ({self.draft_tokens} tokens)')
        if self.quantize != 'none':
            parts.append(f'quantize {self.quantize}')
        return f'accelerations: {", ".join(parts)}, ' if parts else ''

    @property
    def selects_tokens(self) -> bool:
        return self.keep_ratio < 1.0

    @property
    def custom_decode(self) -> bool:
        """Whether generation leaves model.generate() for the loop below."""
        return self.selects_tokens or self.speculative != 'none'


def kept_count(n_image: int, keep_ratio: float) -> int:
    """Image tokens kept of `n_image`: at least one."""
    return max(1, min(n_image, int(round(n_image * keep_ratio))))


def select_image_positions(scores: np.ndarray, image_positions: np.ndarray,
                           keep_ratio: float) -> np.ndarray:
    """The image positions to keep, ascending: the top `keep_ratio` of them by `scores`
    ((n_image,) attention received, summed over heads); ties go to the earlier position."""
    keep = kept_count(len(image_positions), keep_ratio)
    order = np.argsort(-scores, kind='stable')[:keep]
    return np.sort(image_positions[order])


def quantize_int8(module) -> None:
    """Dynamic int8 quantization of every nn.Linear in `module`, in place: weights int8 per
    tensor, activations quantized on the fly (fbgemm on x86, qnnpack on ARM)."""
    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization warns that it is deprecated; it is still what ships in torch.
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.filterwarnings('ignore', message='.*deprecated.*')
        torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8,
                                               inplace=True)


def lookup_candidates(context: list[int], count: int, ngram: int = LOOKUP_NGRAM) -> list[int]:
    """Prompt lookup: the `count` tokens that followed the latest earlier occurrence of the
    context's last n-gram (longest n first), or [] when it has not occurred."""
    for size in range(min(ngram, len(context) - 1), 0, -1):
        tail = context[-size:]
        for start in range(len(context) - size - 1, -1, -1):
            if context[start:start + size] == tail:
                follow = context[start + size:start + size + count]
                if follow:
                    return follow
    return []


@dataclass
class Decoded:
    """What the decoding loop produced."""

    tokens: list[int]  # generated ids, EOS included when produced
    logits: list  # per generated token, (V,) float32 tensors: the model's own scores
    attentions: tuple | None  # prefill attentions per layer, (1, heads, L, L), when asked
    forwards: int  # forward passes of the model (prefill included)
    positions: int  # positions the model processed after the prompt (rejected drafts too)
    draft_positions: int  # positions the draft model processed (its prompt included)
    drafted: int  # tokens proposed
    accepted: int  # proposed tokens that the model confirmed


class DraftProposer:
    """A smaller model sharing the tokenizer and the input embedding space (the bundled draft
    shares tower, projector and embeddings): it decodes greedily on its own cache."""

    def __init__(self, model) -> None:
        self.model = model
        self.cache = None
        self.fed = 0  # positions in the draft's cache
        self.processed = 0  # positions run through the draft, for FLOP accounting

    def start(self, embeds, position_ids) -> None:
        from transformers import DynamicCache
        self.cache = DynamicCache(config=self.model.config)
        self.model(inputs_embeds=embeds.to(self.model.dtype), position_ids=position_ids,
                   past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.fed = self.processed = int(embeds.shape[1])

    def propose(self, pending: list[int], next_position: int, count: int) -> list[int]:
        """`pending`: tokens the draft has not seen yet (the last one not yet verified);
        `next_position`: RoPE position of pending[0]."""
        import torch
        proposed = []
        feed = pending
        position = next_position
        for _ in range(count):
            ids = torch.tensor([feed], device=self.model.device)
            positions = torch.arange(position, position + len(feed),
                                     device=self.model.device)[None]
            out = self.model(input_ids=ids, position_ids=positions, past_key_values=self.cache,
                             use_cache=True, logits_to_keep=1)
            self.fed += len(feed)
            self.processed += len(feed)
            position += len(feed)
            token = int(out.logits[0, -1].argmax())
            proposed.append(token)
            feed = [token]
        return proposed

    def rewind(self, length: int) -> None:
        """Keep the first `length` cached positions (those of confirmed tokens)."""
        if self.fed > length:
            self.cache.crop(length - self.fed)
            self.fed = length


def answer_length(tokens: list[int], eos: set[int]) -> int:
    """The answer's tokens: those before the first EOS (all of them when none ends it)."""
    for index, token in enumerate(tokens):
        if token in eos:
            return index
    return len(tokens)


def greedy_decode(model, embeds, position_ids, *, max_new_tokens: int, eos: set[int],
                  context: list[int] | None = None, draft: DraftProposer | None = None,
                  draft_tokens: int = 3, output_attentions: bool = False) -> Decoded:
    """Greedy decoding from prompt embeddings (1, L, D) at `position_ids` (1, L), with
    speculation from prompt lookup over `context` (the prompt's text ids) or from `draft`.

    Every kept token is the argmax of the model's logits at its position given the tokens
    before it, as in plain greedy decoding; its logits are the verification forward's.
    Call under inference_mode."""
    from transformers import DynamicCache

    prompt_length = int(embeds.shape[1])
    cache = DynamicCache(config=model.config)
    out = model(inputs_embeds=embeds, position_ids=position_ids, past_key_values=cache,
                use_cache=True, output_attentions=output_attentions, logits_to_keep=1)
    logits = [out.logits[0, -1].float()]
    run = _Run(tokens=[int(logits[0].argmax())], logits=logits, fed=prompt_length,
               next_position=int(position_ids[0, -1]) + 1, device=embeds.device)
    if draft is not None:
        draft.start(embeds, position_ids)
    while len(run.tokens) < max_new_tokens and run.tokens[-1] not in eos:
        room = max_new_tokens - len(run.tokens) - 1  # a verification also yields one more
        proposed = _proposals(run, prompt_length, min(draft_tokens, room), context, draft)
        choices, step_logits = _verify(model, cache, run, [run.tokens[-1], *proposed])
        _accept(run, proposed, choices, step_logits, eos, max_new_tokens)
        # The cache keeps the confirmed tokens; the newest token is fed next round.
        keep = prompt_length + len(run.tokens) - 1
        if run.fed > keep:
            cache.crop(keep - run.fed)  # a negative count: positions removed from the end
            run.fed = keep
        if draft is not None:
            draft.rewind(keep)
    return Decoded(run.tokens, run.logits, out.attentions if output_attentions else None,
                   run.forwards, run.processed, draft.processed if draft is not None else 0,
                   run.drafted, run.accepted)


@dataclass
class _Run:
    """The decoding loop's state."""

    tokens: list[int]  # generated ids so far
    logits: list  # (V,) float32 per generated token
    fed: int  # positions in the model's cache
    next_position: int  # RoPE position of the first generated token
    device: object  # the prompt's torch device, where new ids go
    forwards: int = 1  # the prefill
    processed: int = 0
    drafted: int = 0
    accepted: int = 0


def _proposals(run: _Run, prompt_length: int, count: int, context: list[int] | None,
               draft: DraftProposer | None) -> list[int]:
    """Up to `count` speculative tokens to verify after the newest one."""
    if count <= 0:
        return []
    if draft is not None:
        # The draft has seen the prompt and the tokens before the newest.
        pending_from = draft.fed - prompt_length
        return draft.propose(run.tokens[pending_from:], run.next_position + pending_from,
                             count)
    if context is not None:
        return lookup_candidates(context + run.tokens, count)
    return []


def _verify(model, cache, run: _Run, feed: list[int]) -> tuple[list[int], object]:
    """One forward over the newest token and the proposals: the model's argmax at each
    position and its (len(feed), V) float32 logits."""
    import torch

    device = run.device
    start = run.next_position + len(run.tokens) - 1
    positions = torch.arange(start, start + len(feed), device=device)[None]
    out = model(input_ids=torch.tensor([feed], device=device), position_ids=positions,
                past_key_values=cache, use_cache=True)
    run.forwards += 1
    run.fed += len(feed)
    run.processed += len(feed)
    step_logits = out.logits[0].float()
    return step_logits.argmax(dim=-1).tolist(), step_logits


def _accept(run: _Run, proposed: list[int], choices: list[int], step_logits, eos: set[int],
            max_new_tokens: int) -> None:
    """Keep the model's choices up to the first proposal it disagrees with (its own choice
    there included), stopping at EOS or the token limit."""
    run.drafted += len(proposed)
    matched = 0
    while matched < len(proposed) and proposed[matched] == choices[matched]:
        matched += 1
    appended = 0
    for k in range(matched + 1):
        run.tokens.append(choices[k])
        run.logits.append(step_logits[k])
        appended += 1
        if choices[k] in eos or len(run.tokens) >= max_new_tokens:
            break
    run.accepted += min(matched, appended)
