"""The stages of one answer as the pipeline reaches them, for a caller that follows it.

The pipeline calls an optional `progress(stage)` at each step (frame chosen, each pass with
the gate's decision, each crop or token-layer fetch asked for, received or failed); the Ask
action turns these into its feedback. A progress callback may raise to stop the answer there
(a cancelled goal): the pipeline lets the exception through untouched. Pure: no transport.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STAGES = ('frame', 'first_pass', 'crop_requested', 'crop_received', 'crop_unavailable',
          'layers_requested', 'layers_received', 'layers_unavailable', 'second_pass')


@dataclass(frozen=True)
class Stage:
    name: str                   # one of STAGES
    frame: object               # the pipeline's Frame or LayeredFrame answered about
    result: object              # the PipelineResult as it stands (bytes so far)
    done: object = None         # the PassResult that just ran (passes only)
    decision: object = None     # the gate.Decision made of that pass, when one was asked
    boxes: tuple = ()           # Box, original px: the crops asked for, or those cut
    layers: int = 0             # token layers held after this stage (layers policy)
    message: str = ''           # one line: why a fetch failed, or which layers were asked

    def __post_init__(self) -> None:
        if self.name not in STAGES:
            raise ValueError(f'stage must be one of {STAGES}, got {self.name!r}')


Progress = Callable[[Stage], None]


def no_progress(stage: Stage) -> None:
    """The progress of a caller that does not follow the stages."""
