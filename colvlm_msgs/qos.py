"""Named QoS profiles: read once from `config/qos.yaml`, validated, backend-neutral.

The transports map a `QosProfile` onto rclpy's QoSProfile or Cyclone DDS policies; node
code only names the intent ('frames', 'answers', ...). COLVLM_QOS_FILE picks another profile
file for the whole process (e.g. `config/qos-lossy.yaml` on a lossy uplink); both ends of a
link should use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
import os
from pathlib import Path

import yaml

from colvlm_msgs.constants import first_line
from colvlm_msgs.resources import find

RELIABILITY = ('reliable', 'best_effort')
DURABILITY = ('volatile', 'transient_local')
HISTORY = ('keep_last', 'keep_all')
_KEYS = ('reliability', 'durability', 'history', 'depth', 'deadline_ms', 'lifespan_ms')
QOS_FILE_VARIABLE = 'COLVLM_QOS_FILE'


class QosError(ValueError):
    """A bad QoS profile definition or an unknown profile name."""


@dataclass(frozen=True)
class QosProfile:
    name: str
    reliability: str = 'reliable'
    durability: str = 'volatile'
    history: str = 'keep_last'
    depth: int = 10                  # samples kept per instance with keep_last
    deadline_ms: float = 0.0         # ms; 0 = no deadline
    lifespan_ms: float = 0.0         # ms; 0 = samples never expire


def _check_choice(source: str, profile: str, key: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise QosError(f'{source}: profiles.{profile}.{key} must be one of {choices}, '
                       f'got {value!r}')


def parse_profiles(document: object, source: str) -> dict[str, QosProfile]:
    """Profiles from a loaded YAML document `{profiles: {name: {...}}}`."""
    if not isinstance(document, dict) or not isinstance(document.get('profiles'), dict):
        raise QosError(f'{source}: expected a mapping with a "profiles" mapping')
    profiles = {}
    for name, body in document['profiles'].items():
        if not isinstance(body, dict):
            raise QosError(f'{source}: profiles.{name} must be a mapping, got {body!r}')
        unknown = sorted(set(body) - set(_KEYS))
        if unknown:
            raise QosError(f'{source}: profiles.{name} has unknown key {unknown[0]!r} '
                           f'(known: {", ".join(_KEYS)})')
        profile = QosProfile(name=name, **body)
        _check_choice(source, name, 'reliability', profile.reliability, RELIABILITY)
        _check_choice(source, name, 'durability', profile.durability, DURABILITY)
        _check_choice(source, name, 'history', profile.history, HISTORY)
        if not isinstance(profile.depth, int) or isinstance(profile.depth, bool) \
                or profile.depth < 1:
            raise QosError(f'{source}: profiles.{name}.depth must be an integer >= 1, '
                           f'got {profile.depth!r}')
        for key in ('deadline_ms', 'lifespan_ms'):
            value = getattr(profile, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise QosError(f'{source}: profiles.{name}.{key} must be a number >= 0, '
                               f'got {value!r}')
        profiles[name] = profile
    return profiles


def load_profiles(path: Path | None = None) -> dict[str, QosProfile]:
    path = Path(path) if path else find('config/qos.yaml')
    try:
        document = yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as error:
        raise QosError(f'{path}: not valid YAML: {first_line(error, with_type=False)}'
                       ) from None
    return parse_profiles(document, str(path))


def qos_file(environ=os.environ) -> Path:
    """The profile file: COLVLM_QOS_FILE when set (a path, or the name of a shipped file such
    as `config/qos-lossy.yaml`), else the shipped `config/qos.yaml`."""
    name = environ.get(QOS_FILE_VARIABLE, '').strip()
    if not name:
        return find('config/qos.yaml')
    path = Path(name).expanduser()
    if path.is_file():
        return path
    try:
        return find(name)
    except FileNotFoundError:
        raise QosError(f'{QOS_FILE_VARIABLE}={name!r}: no such file (a path, or a shipped '
                       'name such as config/qos-lossy.yaml)') from None


@lru_cache(maxsize=1)
def default_profiles() -> dict[str, QosProfile]:
    """The process's profiles, from `qos_file()`; read once."""
    return load_profiles(qos_file())


def profile(name: str | QosProfile, profiles: dict[str, QosProfile] | None = None) -> QosProfile:
    """A profile by name (or passed through when already one)."""
    if isinstance(name, QosProfile):
        return name
    profiles = default_profiles() if profiles is None else profiles
    try:
        return profiles[name]
    except KeyError:
        raise QosError(f'unknown QoS profile {name!r} (known: {", ".join(profiles)})') from None
