"""Random-init miniatures of the VLM families colvlm supports, saved to disk with a processor
that works offline (the tiny word tokenizer, Glyph-VQA's words): the real transformers model
and processor classes, tiny hidden sizes, 1-2 layers, small images. Test helpers only."""

from __future__ import annotations

from pathlib import Path


def _tokenizer(*extra_tokens: str):
    from colvlm_bench.glyphvqa.scene import TASK_WORDS, TEXT_ALPHABET
    from colvlm_models.tiny_vlm import build_tokenizer

    tokenizer = build_tokenizer(TASK_WORDS, TEXT_ALPHABET)
    if extra_tokens:
        tokenizer.add_special_tokens({'additional_special_tokens': ['<image>', *extra_tokens]})
    return tokenizer


def _text_sizes(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.bos_token_id)


def save_tiny_qwen2_5_vl(path: Path) -> Path:
    """Qwen2.5-VL: 14 px patches merged 2x2 (28 px per token), dynamic resolution, 2 layers."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from colvlm_models.tiny_vlm import CHAT_TEMPLATE, CLIP_MEAN, CLIP_STD

    tokenizer = _tokenizer('<|vision_start|>', '<|vision_end|>')
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=224 * 224, patch_size=14, merge_size=2,
        temporal_patch_size=2, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    # Saved piece by piece: the processor's own save wants a video processor.
    # Qwen's template brackets each image, so two images' tokens never run together.
    tokenizer.chat_template = CHAT_TEMPLATE.replace(
        '<image>\n', '<|vision_start|><image><|vision_end|>')
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
    text = _text_sizes(tokenizer)
    text['rope_parameters'] = {'rope_type': 'default', 'rope_theta': 10000.0,
                               'mrope_section': [2, 2, 4]}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=64, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0]),
        image_token_id=tokenizer.convert_tokens_to_ids('<image>'),
        vision_start_token_id=tokenizer.convert_tokens_to_ids('<|vision_start|>'),
        vision_end_token_id=tokenizer.convert_tokens_to_ids('<|vision_end|>'),
        tie_word_embeddings=False)
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)
    return path


def save_tiny_qwen3_vl(path: Path) -> Path:
    """Qwen3-VL: 16 px patches merged 2x2 (32 px per token), learned position embeddings
    interpolated to the grid, deepstack features from vision layer 0, 2 decoder layers."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from colvlm_models.tiny_vlm import CHAT_TEMPLATE

    tokenizer = _tokenizer('<|vision_start|>', '<|vision_end|>')
    tokenizer.chat_template = CHAT_TEMPLATE.replace(
        '<image>\n', '<|vision_start|><image><|vision_end|>')
    tokenizer.save_pretrained(path)
    Qwen2VLImageProcessorPil(
        min_pixels=64 * 64, max_pixels=256 * 256, patch_size=16, merge_size=2,
        temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    text = _text_sizes(tokenizer)
    text.update(head_dim=16, rope_parameters={
        'rope_type': 'default', 'rope_theta': 10000.0, 'mrope_section': [2, 3, 3],
        'mrope_interleaved': True})
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=64, patch_size=16, spatial_merge_size=2,
                           temporal_patch_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[0]),
        image_token_id=tokenizer.convert_tokens_to_ids('<image>'),
        vision_start_token_id=tokenizer.convert_tokens_to_ids('<|vision_start|>'),
        vision_end_token_id=tokenizer.convert_tokens_to_ids('<|vision_end|>'),
        tie_word_embeddings=False)
    torch.manual_seed(0)
    Qwen3VLForConditionalGeneration(config).save_pretrained(path)
    return path


def save_tiny_idefics3(path: Path) -> Path:
    """Idefics3 (SmolVLM's architecture): a 112 px frame split into 2x2 tiles of 56 px plus a
    56 px global sub-image; 7 px patches, pixel shuffle by 2: 16 tokens (4x4) a sub-image."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil,
    )

    from colvlm_models.tiny_vlm import CHAT_TEMPLATE

    tiles = [f'<row_{i + 1}_col_{j + 1}>' for i in range(6) for j in range(6)]
    tokenizer = _tokenizer('<fake_token_around_image>', '<global-img>', '<end_of_utterance>',
                           *tiles)
    image_processor = Idefics3ImageProcessorPil(
        size={'longest_edge': 112}, max_image_size={'longest_edge': 56},
        do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=16,
                      chat_template=CHAT_TEMPLATE).save_pretrained(path)
    text = _text_sizes(tokenizer)
    text['model_type'] = 'llama'
    config = Idefics3Config(
        text_config=text, scale_factor=2,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=56, patch_size=7),
        image_token_id=tokenizer.convert_tokens_to_ids('<image>'), tie_word_embeddings=False)
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    return path


def save_tiny_gemma3(path: Path) -> Path:
    """Gemma 3: a SigLIP tower at 56 px with 7 px patches, pooled to 16 tokens (4x4) an image
    between <start_of_image> and <end_of_image>; a 2-layer Gemma 3 decoder."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from colvlm_models.tiny_vlm import CHAT_TEMPLATE

    words = _tokenizer('<start_of_image>', '<end_of_image>')
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words.backend_tokenizer, bos_token='<s>', eos_token='</s>',
        unk_token='<unk>', pad_token='<pad>', padding_side='left', model_max_length=1024,
        extra_special_tokens={'image_token': '<image>', 'boi_token': '<start_of_image>',
                              'eoi_token': '<end_of_image>'},
        chat_template=CHAT_TEMPLATE.replace('<image>\n', '<start_of_image>'))
    image_processor = Gemma3ImageProcessorPil(size={'height': 56, 'width': 56},
                                              image_mean=[0.5] * 3, image_std=[0.5] * 3)
    Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=16,
                    chat_template=tokenizer.chat_template).save_pretrained(path)
    text = _text_sizes(tokenizer)
    text.update(head_dim=16, query_pre_attn_scalar=16, sliding_window=64)
    config = Gemma3Config(
        text_config=text, mm_tokens_per_image=16,
        vision_config=dict(model_type='siglip_vision_model', hidden_size=32,
                           intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=56, patch_size=7),
        boi_token_index=tokenizer.convert_tokens_to_ids('<start_of_image>'),
        eoi_token_index=tokenizer.convert_tokens_to_ids('<end_of_image>'),
        image_token_index=tokenizer.convert_tokens_to_ids('<image>'))
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config)
    # Gemma 3 initialises its image projection to zeros (a checkpoint overwrites it): left so,
    # every image token would be the same zero vector and no test could see the image.
    projector = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projector.normal_(0.0, 0.2)
        # SigLIP's Xavier start on a 32-wide tower lets one random attention layer outweigh
        # the residual, so a token no longer stands for its own patch, as a trained tower's
        # does (ViCrop's premise); the text side's 0.02 keeps each patch in its token.
        for module in model.model.vision_tower.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 0.02)
    model.save_pretrained(path)
    return path


def save_tiny_gemma4(path: Path) -> Path:
    """Gemma 4: aspect-ratio-preserving resize to at most 70 soft tokens, 4 px patches pooled
    3x3 (an 8x8 grid at a square frame, 6x10 at a wide one), a 2-layer Gemma 4 decoder."""
    import torch
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, PreTrainedTokenizerFast
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    from colvlm_models.tiny_vlm import CHAT_TEMPLATE

    # Gemma 4's processor wants audio markers too, even for images only.
    markers = {'image_token': '<image>', 'boi_token': '<start_of_image>',
               'eoi_token': '<end_of_image>', 'audio_token': '<audio>',
               'boa_token': '<start_of_audio>', 'eoa_token': '<end_of_audio>'}
    words = _tokenizer(*[token for token in markers.values() if token != '<image>'])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words.backend_tokenizer, bos_token='<s>', eos_token='</s>',
        unk_token='<unk>', pad_token='<pad>', padding_side='left', model_max_length=1024,
        extra_special_tokens=markers, chat_template=CHAT_TEMPLATE)
    # Saved piece by piece: the processor's own save wants video and audio processors.
    tokenizer.save_pretrained(path)
    Gemma4ImageProcessorPil(patch_size=4, max_soft_tokens=70,
                            pooling_kernel_size=3).save_pretrained(path)
    text = _text_sizes(tokenizer)
    text.update(head_dim=16, global_head_dim=16, sliding_window=64,
                hidden_size_per_layer_input=8, vocab_size_per_layer_input=len(tokenizer),
                layer_types=['sliding_attention', 'full_attention'])
    ids = {name: tokenizer.convert_tokens_to_ids(markers[token]) for name, token in (
        ('image_token_id', 'image_token'), ('boi_token_id', 'boi_token'),
        ('eoi_token_id', 'eoi_token'))}
    config = Gemma4Config(
        text_config=text, audio_config=None, **ids,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                           patch_size=4, pooling_kernel_size=3, position_embedding_size=64))
    torch.manual_seed(0)
    Gemma4ForConditionalGeneration(config).save_pretrained(path)
    return path
