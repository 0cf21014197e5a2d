"""Feed a frame source to the edge at its rate, and say how the source ended.

A source that ends is one INFO line; a source that raises (a bag corrupted mid-file, a camera
unplugged, a folder with nothing decodable) is one ERROR line naming the source and the cause,
and its state in the edge's health; a stop asked for (SIGINT) ends it silently. The sources'
own warnings (`skipping ...`) go through the node's logger, so they carry its prefix. It knows
nothing about what the edge does with a frame.
"""

from __future__ import annotations

import logging
import threading
import time

from colvlm_msgs.constants import first_line

SOURCES_LOGGER = 'colvlm_edge.sources'


def run_source(edge, source, fps: float, stop: threading.Event) -> None:
    """Feed `source` to `edge.on_frame` at `fps` until it ends, raises or `stop` is set."""
    period = 1.0 / fps
    next_time = time.monotonic()
    try:
        for frame in source:
            if stop.is_set():
                break
            edge.on_frame(frame)
            next_time += period
            if stop.wait(max(0.0, next_time - time.monotonic())):
                break
    except Exception as error:  # any kind: the node must say so, not die silently
        cause = first_line(error)
        edge.health.set_state('failed', cause)
        edge.node.logger.error(f'source {edge.config.source} failed: {cause}')
        return
    if stop.is_set():
        edge.health.set_state('stopped')
        return
    edge.health.set_state('ended')
    edge.node.logger.info(f'source {edge.config.source} ended')


class _ToNodeLogger(logging.Handler):
    """Python logging records -> the node's logger, at their level."""

    def __init__(self, node_logger) -> None:
        super().__init__(logging.INFO)
        self.node_logger = node_logger

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.node_logger.error(record.getMessage())
        elif record.levelno >= logging.WARNING:
            self.node_logger.warning(record.getMessage())
        else:
            self.node_logger.info(record.getMessage())


def log_sources_through(node_logger) -> None:
    """Route the sources' log lines to node_logger (replacing an earlier node's)."""
    logger = logging.getLogger(SOURCES_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _ToNodeLogger)]:
        logger.removeHandler(handler)
    logger.addHandler(_ToNodeLogger(node_logger))
    logger.setLevel(logging.INFO)
    logger.propagate = False
