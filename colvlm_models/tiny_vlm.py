"""The bundled tiny VLM's recipe: tokenizer, processor and LLaVA configuration.

A standard `LlavaForConditionalGeneration` with the GlyphTower vision encoder, the usual
two-layer MLP projector and a small Llama decoder; a word + character tokenizer saved as a
transformers tokenizer with a LLaVA-1.5 style chat template. This module builds the parts
from scratch (for training) and knows where the trained copy ships (`models/`); training
itself lives in tools/train/ (`python -m tools.recipes.tiny_llava` remakes the shipped copy).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessorPil,
    LlamaConfig,
    LlavaConfig,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from colvlm_models.glyph_tower import GlyphTowerConfig

BUNDLED_MODEL = 'models/colvlm-tiny-llava'  # relative to the share directory
IMAGE_TOKEN = '<image>'
SPECIAL_TOKENS = ('<pad>', '<unk>', '<s>', '</s>', IMAGE_TOKEN)
# The prompt words every task shares; a task adds its own (Glyph-VQA: its colour and shape
# names) through build_tokenizer, and anything else is spelled in characters.
_WORDS = (
    'user assistant what is written on the sign color there a where how many signs are '
    'write general description of image describe yes no top bottom left right center').split()
_PUNCTUATION = '?.,:;!\'"-'
# LLaVA-1.5's conversation format with the question also before the images:
# "USER: question\n<image>\n... question ASSISTANT: answer</s>". In a causal decoder, image
# tokens that come after the question are encoded in its light, so the tokens of the asked
# object can stand out; with the images first, only the positions after them can look for it.
# Measured with tools.probe_question_binding (decoder trained on 1-image colour and presence
# questions, tower frozen): this format left chance after ~1500 steps, the image-first one
# after ~4000.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}\n"
    "{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% endif %}"
    "{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}</s>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
# CLIP's normalisation, as LLaVA-1.5 uses; the pad colour the edge uses maps to ~0.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_tokenizer(task_words: Iterable[str] = (), alphabet: str = ''
                    ) -> PreTrainedTokenizerFast:
    """Whole words for the prompt vocabulary and `task_words`, single characters (WordPiece
    '##' pieces) of a-z and `alphabet` else. The shipped model's tokenizer was built with
    Glyph-VQA's `TASK_WORDS` and `TEXT_ALPHABET`; a saved model keeps its own."""
    characters = sorted(set(alphabet.lower()) | set('abcdefghijklmnopqrstuvwxyz'))
    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *_WORDS, *task_words, *characters, *_PUNCTUATION,
                  *(f'##{c}' for c in characters)):
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordPiece(vocab, unk_token='<unk>', max_input_chars_per_word=64))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece(prefix='##', cleanup=True)
    core.post_processor = processors.TemplateProcessing(
        single='<s> $A', pair='<s> $A $B', special_tokens=[('<s>', vocab['<s>'])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token='<s>', eos_token='</s>', unk_token='<unk>',
        pad_token='<pad>', extra_special_tokens={'image_token': IMAGE_TOKEN},
        chat_template=CHAT_TEMPLATE, model_max_length=1024, padding_side='left')
    tokenizer.add_special_tokens({'additional_special_tokens': [IMAGE_TOKEN]})
    return tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast | None = None,
                    tower: GlyphTowerConfig | None = None) -> LlavaProcessor:
    tower = tower or GlyphTowerConfig()
    tokenizer = tokenizer or build_tokenizer()
    size = tower.image_size
    image_processor = CLIPImageProcessorPil(
        size={'shortest_edge': size}, crop_size={'height': size, 'width': size},
        do_center_crop=True, do_resize=True, image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD))
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                          patch_size=tower.patch_size, vision_feature_select_strategy='full',
                          chat_template=CHAT_TEMPLATE, num_additional_image_tokens=0)


def build_config(tokenizer: PreTrainedTokenizerFast, tower: GlyphTowerConfig | None = None,
                 *, hidden_size: int = 192, num_layers: int = 3, num_heads: int = 4,
                 intermediate_size: int = 512) -> LlavaConfig:
    tower = tower or GlyphTowerConfig()
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_heads, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return LlavaConfig(
        vision_config=tower, text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act='gelu', vision_feature_select_strategy='full',
        vision_feature_layer=-1, image_seq_length=tower.grid_size ** 2,
        tie_word_embeddings=True)


def bundled_model_path() -> Path:
    """Where the shipped weights are; FileNotFoundError (naming the places) if absent."""
    from colvlm_msgs.resources import find
    return find(BUNDLED_MODEL)
