"""The error tree of silo and its wire codes. Imports nothing.

    SiloError                     root; carries ``op`` (e.g. "runtime::create") and ``obj`` (an id)
    ├── NotFound                  "not_found"        the object does not exist
    ├── AlreadyExists             "already_exists"   an object with that id/name exists
    ├── InvalidArgument           "invalid_argument" a document or flag is wrong; ``field`` names it
    ├── InvalidState              "invalid_state"    the object is in a state that forbids the verb
    ├── NotSupported              "not_supported"    silo does not do this (here, or at all)
    ├── Unavailable               "unavailable"      a service or resource cannot be reached now
    ├── Timeout                   "timeout"          an operation did not finish in time
    └── Internal                  "internal"         a kernel or library failure; ``__cause__`` kept

Kernel and library errors (OSError, ...) are translated into this tree once, at the boundary of
the layer that called them, with the original kept as ``__cause__``. Callers test categories with
``isinstance`` or the predicates below, never by parsing messages.
"""

from __future__ import annotations


class SiloError(Exception):
    """Root of every error silo raises on purpose."""

    code = "internal"

    def __init__(
        self, message: str, *, op: str = "", obj: str = "", field: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.obj = obj
        self.field = field

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """The message with the operation and object, as hcsshim's errors print."""
        parts = []
        if self.op:
            parts.append(f"{self.op}")
        if self.obj:
            parts.append(f"{self.obj}")
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def to_wire(self) -> dict[str, str]:
        wire = {"Code": self.code, "Message": self.message}
        if self.op:
            wire["Operation"] = self.op
        if self.obj:
            wire["Id"] = self.obj
        if self.field:
            wire["Field"] = self.field
        return wire


class NotFound(SiloError):
    code = "not_found"


class AlreadyExists(SiloError):
    code = "already_exists"


class InvalidArgument(SiloError):
    code = "invalid_argument"


class InvalidState(SiloError):
    code = "invalid_state"


class NotSupported(SiloError):
    code = "not_supported"


class Unavailable(SiloError):
    code = "unavailable"


class Timeout(SiloError):
    code = "timeout"


class Internal(SiloError):
    code = "internal"


_BY_CODE: dict[str, type[SiloError]] = {
    cls.code: cls
    for cls in (NotFound, AlreadyExists, InvalidArgument, InvalidState, NotSupported,
                Unavailable, Timeout, Internal)
}


def from_wire(wire: dict[str, str]) -> SiloError:
    """Rebuild an error sent by :meth:`SiloError.to_wire` (unknown codes become Internal)."""
    cls = _BY_CODE.get(wire.get("Code", ""), Internal)
    return cls(
        wire.get("Message", ""),
        op=wire.get("Operation", ""),
        obj=wire.get("Id", ""),
        field=wire.get("Field", ""),
    )


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, NotFound)


def is_already_exists(err: BaseException) -> bool:
    return isinstance(err, AlreadyExists)


def is_invalid(err: BaseException) -> bool:
    return isinstance(err, InvalidArgument)


def is_invalid_state(err: BaseException) -> bool:
    return isinstance(err, InvalidState)


def invalid(field: str, reason: str, *, op: str = "", obj: str = "") -> InvalidArgument:
    """An InvalidArgument whose message names the field first: ``field: reason``."""
    return InvalidArgument(f"{field}: {reason}", op=op, obj=obj, field=field)
