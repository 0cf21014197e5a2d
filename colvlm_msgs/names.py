"""ROS 2 name resolution and its DDS spelling under rmw_cyclonedds.

Relative names resolve against the node's namespace, `~` against the node itself; the DDS
topic is the fully qualified name behind `rt/` (topics) or `rq/`+`Request` / `rr/`+`Reply`
(services).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
TOPIC_PREFIX = 'rt'
REQUEST_PREFIX = 'rq'
REPLY_PREFIX = 'rr'


def validate_namespace(namespace: str) -> str:
    """'' or 'cam0' or '/cam0' -> '/' or '/cam0'; raise ValueError naming a bad one."""
    text = namespace.strip()
    if not text or text == '/':
        return '/'
    if not text.startswith('/'):
        text = '/' + text
    text = text.rstrip('/')
    for token in text[1:].split('/'):
        if not _TOKEN.match(token):
            raise ValueError(f'namespace {namespace!r} has an invalid part {token!r}')
    return text


def validate_node_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError(f'node name {name!r} must be letters, digits and underscores')
    return name


def resolve(name: str, namespace: str, node_name: str) -> str:
    """The fully qualified form of a topic or service name, e.g. '/cam0/colvlm/answer'."""
    namespace = validate_namespace(namespace)
    if name.startswith('~'):
        base = namespace.rstrip('/') + '/' + node_name
        name = base + name[1:] if len(name) > 1 else base
    elif not name.startswith('/'):
        name = namespace.rstrip('/') + '/' + name
    if name.endswith('/') or '//' in name:
        raise ValueError(f'name {name!r} has an empty part')
    for token in name[1:].split('/'):
        if not _TOKEN.match(token) or token[0].isdigit():
            raise ValueError(f'name {name!r} has an invalid part {token!r}')
    return name


def dds_topic(fully_qualified: str) -> str:
    return TOPIC_PREFIX + fully_qualified


def dds_service_topics(fully_qualified: str) -> tuple[str, str]:
    """(request topic, reply topic) of a service."""
    return (REQUEST_PREFIX + fully_qualified + 'Request',
            REPLY_PREFIX + fully_qualified + 'Reply')
