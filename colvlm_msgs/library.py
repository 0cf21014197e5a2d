"""All interfaces colvlm speaks: its own `.msg`/`.srv`/`.action` files and the standard ones
it uses. An action's derived wire types ('pkg/action/Name_SendGoal', ..._FeedbackMessage) are
found by `message` and `service` like any other, but are not listed in `messages` and
`services`, which hold what the msg/ and srv/ folders define.

Loading checks that every nested type resolves, so a typo fails at start-up with the file,
field and type named, never later inside DDS.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from colvlm_msgs.interfaces import (
    ActionSpec,
    InterfaceError,
    MessageSpec,
    ServiceSpec,
    read_interface,
)

PACKAGE = 'colvlm'
_HERE = Path(__file__).resolve().parent


class InterfaceLibrary:
    """Message, service and action specs by name ('pkg/msg/Name', 'pkg/srv/Name',
    'pkg/action/Name')."""

    def __init__(self):
        self.messages: dict[str, MessageSpec] = {}
        self.services: dict[str, ServiceSpec] = {}
        self.actions: dict[str, ActionSpec] = {}
        self._derived_messages: dict[str, MessageSpec] = {}  # actions' goal, feedback, ...
        self._derived_services: dict[str, ServiceSpec] = {}  # actions' send_goal, get_result

    def load_package(self, package: str, directory: Path) -> None:
        """Read `directory/{msg,srv,action}/*` as `package`."""
        for kind in ('msg', 'srv', 'action'):
            for path in sorted((Path(directory) / kind).glob(f'*.{kind}')):
                self.add(read_interface(path, package))

    def add(self, spec: MessageSpec | ServiceSpec | ActionSpec) -> None:
        if isinstance(spec, ActionSpec):
            self.actions[spec.name] = spec
            for part in (spec.goal, spec.result, spec.feedback, spec.feedback_message):
                self._derived_messages[part.name] = part
            for service in (spec.send_goal, spec.get_result):
                self._derived_services[service.name] = service
            return
        target = self.services if isinstance(spec, ServiceSpec) else self.messages
        target[spec.name] = spec

    def validate(self) -> None:
        """Raise InterfaceError naming the file and field of the first unresolved type."""
        parts = list(self.messages.values())
        for service in self.services.values():
            parts += [service.request, service.response]
        for action in self.actions.values():
            parts += action.messages
        for spec in parts:
            for field in spec.fields:
                if field.type.is_nested and field.type.base not in self.messages \
                        and field.type.base not in self._derived_messages:
                    raise InterfaceError(f'{spec.source}: field {field.name!r} has unknown type '
                                         f'{field.type.base!r}')

    def message(self, name: str) -> MessageSpec:
        name = normalize_name(name, 'msg')
        spec = self.messages.get(name) or self._derived_messages.get(name)
        if spec is None:
            raise InterfaceError(f'unknown message type {name!r}')
        return spec

    def service(self, name: str) -> ServiceSpec:
        name = normalize_name(name, 'srv')
        spec = self.services.get(name) or self._derived_services.get(name)
        if spec is None:
            raise InterfaceError(f'unknown service type {name!r}')
        return spec

    def action(self, name: str) -> ActionSpec:
        name = normalize_name(name, 'action')
        try:
            return self.actions[name]
        except KeyError:
            raise InterfaceError(f'unknown action type {name!r}') from None

    def dependencies(self, spec: MessageSpec) -> list[MessageSpec]:
        """Every message `spec` refers to, directly or not, each once, dependencies first."""
        ordered: list[MessageSpec] = []
        seen: set[str] = set()

        def visit(current: MessageSpec) -> None:
            for field in current.fields:
                if field.type.is_nested and field.type.base not in seen:
                    seen.add(field.type.base)
                    nested = self.message(field.type.base)
                    visit(nested)
                    ordered.append(nested)

        visit(spec)
        return ordered


def normalize_name(name: str, kind: str) -> str:
    """'pkg/Name' or 'pkg/msg/Name' -> 'pkg/msg/Name' (kind 'msg', 'srv' or 'action'); the
    messages and services an action derives keep their 'pkg/action/Name_Part' names."""
    parts = name.split('/')
    if len(parts) == 2:
        return f'{parts[0]}/{kind}/{parts[1]}'
    if len(parts) == 3 and parts[1] in (kind, 'action'):
        return name
    raise InterfaceError(f'interface name must be "pkg/{kind}/Name", got {name!r}')


@lru_cache(maxsize=1)
def default_library() -> InterfaceLibrary:
    """colvlm's interfaces plus the standard ones they use, validated."""
    library = InterfaceLibrary()
    for package_dir in sorted((_HERE / 'standard').iterdir()):
        if package_dir.is_dir():
            library.load_package(package_dir.name, package_dir)
    library.load_package(PACKAGE, _HERE)
    library.validate()
    return library
