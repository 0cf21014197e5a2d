"""Answer.msg's STATUS_* and DECISION_* constants as IntEnums, generated from the file.

The interface file stays the one source: `Status.BUSY == Answer.STATUS_BUSY` on every backend,
and `Status(answer.status).name` is 'BUSY'. Also the one way to say what went wrong in one
line (`first_line`). Knows nothing of transports or models.
"""

from __future__ import annotations

import enum

from colvlm_msgs.library import default_library


def _constants(message: str, prefix: str) -> dict[str, int]:
    spec = default_library().message(message)
    return {constant.name[len(prefix):]: int(constant.value) for constant in spec.constants
            if constant.name.startswith(prefix)}


Status = enum.IntEnum('Status', _constants('colvlm/msg/Answer', 'STATUS_'),
                      module=__name__, qualname='Status')
Status.__doc__ = "Answer.status: 'OK', 'BUSY', ... (Answer.msg's STATUS_*)."

Decision = enum.IntEnum('Decision', _constants('colvlm/msg/Answer', 'DECISION_'),
                        module=__name__, qualname='Decision')
Decision.__doc__ = "Answer.decision: 'GLOBAL', 'LOCAL_CROP', ... (Answer.msg's DECISION_*)."


def status_name(value: int) -> str:
    """'OK', 'BUSY', ... for an Answer.status value; the number itself when unknown."""
    try:
        return Status(value).name
    except ValueError:
        return str(value)


def decision_name(value: int) -> str:
    """'GLOBAL', 'LOCAL_CROP', ... for an Answer.decision value; the number when unknown."""
    try:
        return Decision(value).name
    except ValueError:
        return str(value)


def first_line(error: BaseException, *, with_type: bool = True) -> str:
    """'TypeName: the first line of its message' (the repr when the message is empty), for
    one-line reports of an exception; without the type name where the context says it."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else repr(error)
    return f'{type(error).__name__}: {line}' if with_type else line
