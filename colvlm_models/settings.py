"""Per-model settings: what a model's `colvlm.yaml` says its gate threshold and ViCrop method
and layer are, beside its weights.

An entropy threshold in nats is a property of one model (0.2281 for the bundled tiny tower
means nothing for LLaVA-1.5), and so are the attention layer and the RoI map that work best
for it. A model folder may hold `colvlm.yaml`, a flat or nested mapping of these keys:

    gate: {threshold: 0.2281}     # nats, from `colvlm eval --calibrate` on that model
    vicrop: {method: att, layer: 1}

A model without the file (a hub id, a folder without it) gets GENERIC: ViCrop's relative
attention (Zhang et al., 2025) at the depth-scaled layer (-1 = auto). The node applies these
between its table's defaults and its parameter files: table < colvlm.yaml < files < -p.
"""

from __future__ import annotations

from pathlib import Path

import yaml

SETTINGS_FILE = 'colvlm.yaml'
BUNDLED_MODEL = 'models/colvlm-tiny-llava'  # as colvlm_models.tiny_vlm names it
# The keys a model may set, with the generic value (also the node table's default).
GENERIC = {'gate.threshold': 0.2281, 'vicrop.method': 'rel_att', 'vicrop.layer': -1}
METHODS = ('rel_att', 'att', 'grad_att')


def model_folder(model: str | Path | None) -> Path | None:
    """The local folder of `model` ('' / 'bundled' = the shipped one), or None (a hub id)."""
    if model is None:
        return None
    if str(model) in ('', 'bundled'):
        from colvlm_msgs.resources import find
        try:
            return Path(find(BUNDLED_MODEL))
        except FileNotFoundError:
            return None
    path = Path(model)
    return path if path.is_dir() else None


def model_settings(model: str | Path | None) -> dict[str, object]:
    """GENERIC with what `model`'s colvlm.yaml sets; ValueError naming the file and key."""
    settings = dict(GENERIC)
    folder = model_folder(model)
    path = folder / SETTINGS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return settings
    try:
        document = yaml.safe_load(path.read_text(encoding='utf-8')) or {}
    except yaml.YAMLError as error:
        raise ValueError(f'{path}: not valid YAML: {str(error).splitlines()[0]}') from None
    if not isinstance(document, dict):
        raise ValueError(f'{path}: expected a mapping of settings')
    for name, value in _flatten(document).items():
        settings[name] = _check(path, name, value)
    return settings


def _flatten(tree: dict, prefix: str = '') -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def _check(path: Path, name: str, value: object) -> object:
    where = f'{path}: {name}'
    if name not in GENERIC:
        raise ValueError(f'{where}: unknown model setting (known: {", ".join(GENERIC)})')
    if name == 'gate.threshold':
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        if not ok:
            raise ValueError(f'{where} must be a number >= 0, got {value!r}')
        return float(value)
    if name == 'vicrop.method':
        if value not in METHODS:
            raise ValueError(f'{where} must be one of {METHODS}, got {value!r}')
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(f'{where} must be an int >= -1 (-1 = auto), got {value!r}')
    return value


def write_model_settings(folder: str | Path, threshold: float, method: str,
                         layer: int) -> Path:
    """Write `folder`/colvlm.yaml (checked as it will be read); its path."""
    path = Path(folder) / SETTINGS_FILE
    values = {'gate.threshold': threshold, 'vicrop.method': method, 'vicrop.layer': layer}
    for name, value in values.items():
        _check(path, name, value)
    path.write_text(
        '# Settings of this model, read by colvlm when the model is chosen (see\n'
        '# colvlm_models/settings.py); a parameter file or -p still wins over them.\n'
        + yaml.safe_dump({'gate': {'threshold': float(threshold)},
                          'vicrop': {'method': method, 'layer': int(layer)}},
                         sort_keys=False), encoding='utf-8')
    return path
