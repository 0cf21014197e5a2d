"""Shared fixtures: a private DDS domain per test, loopback-only discovery, no network; and
`--order reverse|shuffle` (with `--order-seed N`), which runs the files and the tests within
each file in another order, to show that no test leans on one that ran before it."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from pathlib import Path
import random
import subprocess
import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _domain_slice() -> range:
    """The DDS domain ids this test process may use: 101..230 (away from the default 0 and
    inside Cyclone DDS's port range), split into disjoint slices between parallel workers
    (pytest-xdist's -n), so tests running at the same time never share a domain."""
    workers = max(1, int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1') or 1))
    worker = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = 130 // workers
    return range(101 + index * size, 101 + (index + 1) * size)


_DOMAINS = _domain_slice()
if int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1') or 1) > 1:
    # Parallel workers share the cores: one math thread each (torch, OpenCV, BLAS), set
    # before any of them loads, instead of every worker starting one thread per core.
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('MKL_NUM_THREADS', '1')
# Start at a pid-dependent place, so two runs at once (two checkouts) rarely meet either.
_domain_ids = itertools.count(os.getpid() * 7)

# Tests never touch a model hub, and find each other on loopback only.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')


def pytest_addoption(parser):
    parser.addoption('--order', choices=('file', 'reverse', 'shuffle'), default='file',
                     help='test order: as written (default), files and tests reversed, or '
                          'shuffled within and across files')
    parser.addoption('--order-seed', type=int, default=0, help='seed of --order shuffle')


def pytest_collection_modifyitems(config, items):
    """Reorders whole files, then the tests inside each, so module fixtures are still set up
    once per file."""
    order = config.getoption('--order')
    if order == 'file':
        return
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split('::')[0], []).append(item)
    groups = list(files.values())
    if order == 'reverse':
        groups = [group[::-1] for group in groups[::-1]]
    else:
        rng = random.Random(config.getoption('--order-seed'))
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)
    items[:] = [item for group in groups for item in group]


def _private_domain(monkeypatch) -> dict[str, str]:
    domain_id = _DOMAINS[next(_domain_ids) % len(_DOMAINS)]
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain_id))
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    monkeypatch.setenv('COLVLM_TRANSPORT', 'dds')
    monkeypatch.delenv('CYCLONEDDS_URI', raising=False)
    return dict(os.environ)


@pytest.fixture
def dds_env(monkeypatch) -> dict[str, str]:
    """An environment with a domain id no other test of this run uses, loopback discovery."""
    return _private_domain(monkeypatch)


@contextlib.contextmanager
def module_dds_env():
    """dds_env for a longer scope (a module's processes): `yield from` it in a fixture."""
    with pytest.MonkeyPatch.context() as patch:
        yield _private_domain(patch)


def spawn(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    """Start `python args...` from the repository root with line-buffered text pipes: for
    children spoken to over stdin/stdout (dds_peer.py). `colvlm` verbs watched through
    their stderr: test/processes.py."""
    return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1, **kwargs)


def tiny_clip_llama_configs(tokenizer):
    """(vision, text) configs of the random-init CLIP-ViT + Llama miniatures the tests build:
    56 px input, 14 px patches (a 4x4 grid plus CLS), a 2-layer decoder over `tokenizer`."""
    from transformers import CLIPVisionConfig, LlamaConfig

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=56, patch_size=14)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return vision, text


@pytest.fixture(scope='session')
def tiny_llava_path(tmp_path_factory) -> Path:
    """A random-init tiny LLaVA with the bundled recipe (128x128 encoder input), saved once
    per test session: the real transformers code path without the trained weights."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from colvlm_bench.glyphvqa.scene import TASK_WORDS, TEXT_ALPHABET
    import colvlm_models.glyph_tower  # noqa: F401  registers the tower with the Auto classes
    from colvlm_models.tiny_vlm import build_config, build_processor, build_tokenizer

    path = tmp_path_factory.mktemp('tiny-llava')
    torch.manual_seed(0)
    tokenizer = build_tokenizer(TASK_WORDS, TEXT_ALPHABET)
    LlavaForConditionalGeneration(build_config(tokenizer)).save_pretrained(path)
    build_processor(tokenizer).save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _loggers_propagate():
    """ROS 2's `launch` (imported by the launch-file tests where it is installed, as under
    `colcon test`) makes every logger created after it a non-propagating LaunchLogger, so
    caplog missed colvlm's records in the tests that ran later: give them back."""
    yield
    if logging.getLoggerClass() is logging.Logger:
        return
    logging.setLoggerClass(logging.Logger)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if type(logger).__name__ == 'LaunchLogger' and not logger.name.startswith('launch'):
            logger.propagate = True
