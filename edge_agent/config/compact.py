"""Rebuild validated config models once the parsed document is freed, so its memory can go.

The loader builds each tag model while the parsed file (~1 kB a tag of dicts and strings) is
still alive, so the models and their names land between the document's objects. Python's
allocator returns an arena to the system only when nothing in it is alive: a 50,000-tag YAML
plant kept ~25 MB of freed document for as long as the agent ran. Rebuilt after the document
is gone, the models (and the strings and numbers they hold) are packed together instead.

Rebuilt instances also get CPython's key-sharing instance dicts: 216 instead of 464 bytes for
a Modbus tag. pydantic assigns each instance a whole ``__dict__``, which never fills a class's
shared keys, so :func:`prime_shared_keys` fills them when the class is created (StrictModel
does). Elsewhere (another interpreter, a class primed too late) instances keep ordinary
dicts: the same values, only larger.
"""

from __future__ import annotations

__all__ = ["compact_models", "prime_shared_keys"]

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_setattr = object.__setattr__


def prime_shared_keys(cls: type[BaseModel]) -> None:
    """Enter the class's field names in its shared instance keys (one throwaway instance)."""
    probe = cls.__new__(cls)
    for name in cls.model_fields:
        _setattr(probe, name, None)


def compact_models(models: Sequence[M], copies: dict[Any, Any]) -> list[M]:
    """Equal models (same class, fields, fields set, extras, private state) in fresh memory.

    Strings and integers are copied too (a tag's name and address are the document's own
    objects); equal ones are copied once per ``copies`` (pass the same dict for every list of
    one config), so a value shared before is shared after.
    """
    out: list[M] = []
    for model in models:
        cls = type(model)
        new = cls.__new__(cls)
        for name, value in model.__dict__.items():
            kind = type(value)
            if kind is str or (kind is int and not -5 <= value <= 256):
                copy = copies.get(value)
                if copy is None:
                    copy = copies[value] = (value + "\0")[:-1] if kind is str else value + 0
                value = copy
            _setattr(new, name, value)
        _setattr(new, "__pydantic_fields_set__", model.__pydantic_fields_set__)
        _setattr(new, "__pydantic_extra__", model.__pydantic_extra__)
        _setattr(new, "__pydantic_private__", model.__pydantic_private__)
        out.append(new)
    return out
