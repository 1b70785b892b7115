"""Small immutable records, cheap to define: for the modules that every command imports.

``@dataclass(frozen=True)`` writes five or six methods as source text and compiles them when its
module is imported (0.3 to 0.5 ms a class), and ``typing.NamedTuple`` compiles each field's
annotation (about 0.15 ms a class): on the path of ``ospp /dstatus`` that was 5 ms, then
1.8 ms, of a start that takes about 50. A :class:`Record` is declared like a frozen dataclass::

    class Problem(Record):
        code: int
        detail: str
        since: datetime | None = None

and behaves like one (keyword or positional construction, defaults, equality and hash by
value between records of one class, a readable repr, no assignment after construction), with
methods written once here and shared. ``_replace(**changes)`` makes a changed copy. Type
checkers see it as a dataclass (``typing.dataclass_transform``).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Self, dataclass_transform


@dataclass_transform(frozen_default=True)
class Record:
    _fields: ClassVar[tuple[str, ...]] = ()
    _field_set: ClassVar[frozenset[str]] = frozenset()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, None] = {}
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name in inspect.get_annotations(klass):
                if klass is Record or name.startswith("_"):
                    continue
                fields[name] = None
                if name in klass.__dict__:
                    defaults[name] = klass.__dict__[name]
                else:
                    defaults.pop(name, None)
        cls._fields = tuple(fields)
        cls._field_set = frozenset(fields)
        cls._defaults = defaults
        seen_default = False
        for name in cls._fields:
            if name in defaults:
                seen_default = True
            elif seen_default:
                raise TypeError(
                    f"{cls.__name__}: field {name!r} has no default, the one before has"
                )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if not kwargs and len(args) == len(fields):  # the usual calls: every field, in order
            object.__setattr__(self, "__dict__", dict(zip(fields, args, strict=True)))
            return
        if not args and len(kwargs) == len(fields) and kwargs.keys() == self._field_set:
            object.__setattr__(self, "__dict__", {f: kwargs[f] for f in fields})  # or by name
            return
        name = type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} arguments, {len(args)} were given")
        values = dict(zip(fields, args, strict=False))
        for key, value in kwargs.items():
            if key not in fields or key in values:
                raise TypeError(f"{name}() got an unexpected or repeated argument {key!r}")
            values[key] = value
        for field in fields:
            if field not in values:
                if field not in self._defaults:
                    raise TypeError(f"{name}() is missing the argument {field!r}")
                values[field] = self._defaults[field]
        object.__setattr__(self, "__dict__", {f: values[f] for f in fields})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is frozen")

    def _values(self) -> tuple[Any, ...]:
        return tuple(self.__dict__.values())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({inner})"

    def _replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return type(self)(**{**self.__dict__, **changes})
