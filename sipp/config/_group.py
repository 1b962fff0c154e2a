"""How a setting is declared, once: :func:`setting`, :func:`auto` and :func:`group`.

A config group is a frozen, keyword-only dataclass whose every field is declared with one of
these helpers. The declaration (a :class:`Setting` in the field's metadata) holds the
setting's default, its check and its doc; the field's annotation is its stored type. There
is no second place: the engine, the scheduler and the docs tests read the groups and these
declarations directly.

- A real default is the value stored when the field is not given (``n_parallel`` → 1).
- :data:`AUTO` marks a model-dependent value: it is stored as ``None`` and decided at load
  from the model's facts (``n_ctx``: the training context...). ``fallback`` is the number
  that decision starts from where the declaration has one (``n_batch`` → 2048).
- A group keeps which fields were given (:attr:`Group.fields_set`): ``to_dict`` and
  ``repr`` show only those, and a sampling override replaces only those.

Passing ``None`` for a field means "not given". Every given value goes through its check,
which raises :class:`~sipp.errors.ConfigurationError` naming the full field path.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import InitVar, dataclass, field, fields
from typing import Any, ClassVar, Final, TypeVar

from sipp.config._rules import Rule, show
from sipp.errors import ConfigurationError

__all__ = ["AUTO", "Group", "Setting", "auto", "group", "setting"]


class _Auto:
    """The type of :data:`AUTO` (one instance)."""

    _made: ClassVar[_Auto | None] = None

    def __new__(cls) -> _Auto:
        if cls._made is None:
            cls._made = super().__new__(cls)
        return cls._made

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Final = _Auto()
"""The default of a model-dependent setting: stored as ``None``, decided at load."""

_KEY: Final = "sipp.setting"


@dataclass(frozen=True)
class Setting:
    """One setting's declaration (its type is the dataclass field's annotation).

    ``default`` is the stored value when the field is not given, or :data:`AUTO`;
    ``check(value, path)`` validates and normalizes a given value; ``doc`` says what the
    setting does; ``fallback`` is the value an AUTO decision starts from (None: the
    model's own); ``dump`` turns the stored value into its TOML/JSON form when that is not
    the plain value.
    """

    default: Any
    check: Rule
    doc: str
    fallback: Any = None
    dump: Callable[[Any], object] | None = None

    @property
    def is_auto(self) -> bool:
        """Whether the value is model-dependent (stored as None until decided at load)."""
        return self.default is AUTO

    @property
    def stored_default(self) -> Any:
        """What a group stores when the field is not given."""
        return None if self.default is AUTO else self.default


def setting(
    default: object, check: Rule, doc: str, *, dump: Callable[[Any], object] | None = None
) -> Any:
    """Declare a setting with a concrete default (``None`` only where it means "off")."""
    return field(default=None, metadata={_KEY: Setting(default, check, doc, dump=dump)})


def auto(check: Rule, doc: str, *, fallback: object = None) -> Any:
    """Declare a model-dependent setting: :data:`AUTO` unless given."""
    return field(default=None, metadata={_KEY: Setting(AUTO, check, doc, fallback)})


_G = TypeVar("_G", bound="Group")


def group(cls: type[Group], doc: str) -> Any:
    """Declare a nested group: an instance of ``cls`` or a dict (``cls.from_dict``)."""

    def check(value: object, path: str) -> object:
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise ConfigurationError(f"{path} must be a {cls.__name__} or a dict, got {show(value)}")

    return field(default=None, metadata={_KEY: Setting(cls(), check, doc)})


_Row = tuple[str, Setting, Any]
_TABLES: dict[type, tuple[_Row, ...]] = {}


def _table(cls: type) -> tuple[_Row, ...]:
    """``(name, declaration, stored default)`` of each field of a group class, in order
    (built once per class: groups are built per request, as sampling overrides)."""
    table = _TABLES.get(cls)
    if table is None:
        table = _TABLES[cls] = tuple(
            (spec.name, spec.metadata[_KEY], spec.metadata[_KEY].stored_default)
            for spec in fields(cls)
        )
    return table


def _plain(value: object) -> object:
    """A JSON/TOML-compatible copy of a stored value (tuples become lists)."""
    if isinstance(value, Group):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class Group:
    """Shared behaviour of config groups: checks, given fields, equality, dict conversion."""

    _PATH: ClassVar[str] = ""
    # Which fields were given. An InitVar so that dataclasses.replace() carries it over:
    # replace passes every field's current value, which alone would mark every field given.
    _given: InitVar[frozenset[str] | None] = None

    def __post_init__(self, _given: frozenset[str] | None) -> None:
        given: set[str] = set()
        values = self.__dict__
        for name, declared, default in _table(type(self)):
            value = values[name]
            if value is None:
                values[name] = default
                continue
            values[name] = value = declared.check(value, f"{self._PATH}.{name}".lstrip("."))
            if isinstance(default, Group):
                continue  # a group counts as given when it has given fields
            if _given is None or name in _given or value != default:
                given.add(name)
        object.__setattr__(self, "_given", frozenset(given))
        self._check_together()

    def _check_together(self) -> None:
        """Checks that involve more than one field; run after each field was checked."""

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Every field's declaration, in field order."""
        return {name: declared for name, declared, _ in _table(cls)}

    @classmethod
    def setting(cls, name: str) -> Setting:
        """The declaration of field ``name``."""
        return cls.settings()[name]

    @property
    def fields_set(self) -> frozenset[str]:
        """The fields that were given (a nested group: when any of its fields was)."""
        own: frozenset[str] = self.__dict__["_given"]
        nested = {n for n, v in self._values() if isinstance(v, Group) and v.fields_set}
        return own | nested

    def _values(self) -> Iterator[tuple[str, Any]]:
        values = self.__dict__
        for name, _, _ in _table(type(self)):
            yield name, values[name]

    def _updated(self: _G, other: _G) -> _G:
        """A copy with every field ``other`` gives taken from ``other``. Both are checked
        already, so nothing is checked again: for groups of plain fields without
        cross-field checks (sampling overrides)."""
        taken = other.__dict__["_given"]
        if not taken:
            return self
        merged = object.__new__(type(self))
        merged.__dict__.update(self.__dict__)
        merged.__dict__.update((name, other.__dict__[name]) for name in taken)
        merged.__dict__["_given"] = self.__dict__["_given"] | taken
        return merged

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Group)
        return self.__dict__["_given"] == other.__dict__["_given"] and all(
            value == getattr(other, name) for name, value in self._values()
        )

    def __hash__(self) -> int:
        return hash((type(self), self.__dict__["_given"], tuple(v for _, v in self._values())))

    def __repr__(self) -> str:
        shown = self.fields_set
        body = ", ".join(f"{n}={v!r}" for n, v in self._values() if n in shown)
        return f"{type(self).__name__}({body})"

    @classmethod
    def from_dict(cls: type[_G], data: Mapping[str, Any]) -> _G:
        """Build from a snake_case dict (nested dicts for groups); unknown keys are errors."""
        where = cls._PATH or "runtime config"
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{where} must be a dict, got {show(data)}")
        names = [name for name, _, _ in _table(cls)]
        for key in data:
            if not isinstance(key, str):
                raise ConfigurationError(f"{where} keys must be strings, got {show(key)}")
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"expected one of: {', '.join(names)}"
                )
                raise ConfigurationError(f"unknown key {key!r} in {where} ({hint})")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The given fields as a JSON/TOML-compatible dict (``from_dict`` reads it back)."""
        shown = self.fields_set
        declared = self.settings()
        out: dict[str, Any] = {}
        for name, value in self._values():
            if name in shown:
                dump = declared[name].dump
                out[name] = dump(value) if dump is not None else _plain(value)
        return out
