"""A query's max_new_tokens reaches generate() per call: the shared backend's own limit is
never changed, on the plain and the accelerated decode (a random tiny LLaVA)."""

from __future__ import annotations

import numpy as np
import pytest

from colvlm_models.vlm import TransformersVlm


@pytest.mark.parametrize('acceleration', [None, 'prompt_lookup'])
def test_a_per_call_limit_bounds_that_call_only(tiny_llava_path, acceleration):
    from colvlm_models.accelerate import Acceleration

    kwargs = {'acceleration': Acceleration(speculative=acceleration)} if acceleration else {}
    backend = TransformersVlm(str(tiny_llava_path), progress=False, max_new_tokens=6,
                              **kwargs)
    image = np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8)
    free = backend.generate([image], 'What is written on the sign?')
    assert free.output_tokens > 1  # so that a limit of 1 is seen to bound the next call
    limited = backend.generate([image], 'What is written on the sign?', max_new_tokens=1)
    assert limited.output_tokens == 1 and backend.max_new_tokens == 6
    again = backend.generate([image], 'What is written on the sign?')
    assert again.output_tokens == free.output_tokens
