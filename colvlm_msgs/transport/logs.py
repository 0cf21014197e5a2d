"""Loggers that print like ROS 2's console output: `[LEVEL] [time] [node]: message`."""

from __future__ import annotations

import logging
import sys


class _RosStyleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return (f'[{record.levelname}] [{record.created:.6f}] [{record.name}]: '
                f'{record.getMessage()}')


def node_logger(namespace: str, name: str) -> logging.Logger:
    """The logger of node `name` in `namespace`, writing to stderr once."""
    qualified = (namespace.strip('/').replace('/', '.') + '.' + name).lstrip('.')
    logger = logging.getLogger(f'colvlm.{qualified}')
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_RosStyleFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
