"""All interfaces colvlm speaks: its own `.msg`/`.srv` files and the standard ones it uses.

Loading checks that every nested type resolves, so a typo fails at start-up with the file,
field and type named, never later inside DDS.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from colvlm_msgs.interfaces import InterfaceError, MessageSpec, ServiceSpec, read_interface

PACKAGE = 'colvlm'
_HERE = Path(__file__).resolve().parent


class InterfaceLibrary:
    """Message and service specs by name ('pkg/msg/Name', 'pkg/srv/Name')."""

    def __init__(self):
        self.messages: dict[str, MessageSpec] = {}
        self.services: dict[str, ServiceSpec] = {}

    def load_package(self, package: str, directory: Path) -> None:
        """Read `directory/msg/*.msg` and `directory/srv/*.srv` as `package`."""
        for kind in ('msg', 'srv'):
            for path in sorted((Path(directory) / kind).glob(f'*.{kind}')):
                spec = read_interface(path, package)
                if isinstance(spec, ServiceSpec):
                    self.services[spec.name] = spec
                else:
                    self.messages[spec.name] = spec

    def add(self, spec: MessageSpec | ServiceSpec) -> None:
        target = self.services if isinstance(spec, ServiceSpec) else self.messages
        target[spec.name] = spec

    def validate(self) -> None:
        """Raise InterfaceError naming the file and field of the first unresolved type."""
        parts = list(self.messages.values())
        for service in self.services.values():
            parts += [service.request, service.response]
        for spec in parts:
            for field in spec.fields:
                if field.type.is_nested and field.type.base not in self.messages:
                    raise InterfaceError(f'{spec.source}: field {field.name!r} has unknown type '
                                         f'{field.type.base!r}')

    def message(self, name: str) -> MessageSpec:
        name = normalize_name(name, 'msg')
        try:
            return self.messages[name]
        except KeyError:
            raise InterfaceError(f'unknown message type {name!r}') from None

    def service(self, name: str) -> ServiceSpec:
        name = normalize_name(name, 'srv')
        try:
            return self.services[name]
        except KeyError:
            raise InterfaceError(f'unknown service type {name!r}') from None

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
    """'pkg/Name' or 'pkg/msg/Name' -> 'pkg/msg/Name' (kind 'msg' or 'srv')."""
    parts = name.split('/')
    if len(parts) == 2:
        return f'{parts[0]}/{kind}/{parts[1]}'
    if len(parts) == 3 and parts[1] == kind:
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
