"""Interventions from names, CLI strings and saved specs: `get`, `parse`, `from_spec`.

    >>> parse("mask-sink:layers=1,4,7,heads=0-2") + get("scale-sink", gamma=0.5)
    >>> from_spec({"name": "scale-sink", "gamma": 0.5})          # what a result's provenance holds
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from interventions.protocol import CATALOGUE, Compose, Intervention
from workbench.core.errors import InputError


def catalogue() -> dict[str, str]:
    """name -> one-line summary of every registered intervention."""
    return {name: cls.summary for name, cls in CATALOGUE.items()}


def _parameters(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.compare}


def get(name: str, **params: Any) -> Intervention:
    """An intervention from the catalogue, with its parameters checked by name (and by type: a float
    parameter must be a finite number).

        >>> get("scale-sink", gamma=0.5, layers="3-10")
    """
    if not isinstance(name, str) or name not in CATALOGUE:
        raise InputError(f"unknown intervention {name!r}: the catalogue has {', '.join(CATALOGUE)}")
    cls = CATALOGUE[name]
    fields = _parameters(cls)
    unknown = [p for p in params if p not in fields]
    if unknown:
        raise InputError(f"{name}: unknown parameter {unknown[0]!r}; it takes {', '.join(fields) or 'none'}")
    made = cls(**params)
    made.check_parameters()  # also for classes whose own __post_init__ does not call the base's
    return made


def _convert(cls: type, key: str, raw: str, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kind = hints.get(key, Any)
    text = raw.strip()
    try:
        if kind is float:
            return float(text)
        if kind is int:
            return int(text)
        if kind is bool:
            if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        if kind is str:
            return text
    except ValueError as exc:
        raise InputError(f"{where}: {key}={text!r} is not a valid {kind.__name__}"
                         + (" (write true or false)" if kind is bool else "")) from exc
    if text.lstrip("-").isdigit():
        return int(text)
    return None if text.lower() in ("none", "all") and key in ("layers", "heads") else text


def parse(text: str) -> Intervention:
    """`name` or `name:key=value,key=value`; `a + b` composes. A piece without '=' continues the previous
    value, so lists need no quoting: `mask-sink:layers=1,4,7,heads=0-2`."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("empty intervention; write e.g. mask-sink or scale-sink:gamma=0.5,layers=3-10")
    if "+" in text:
        parts = [parse(piece) for piece in text.split("+")]
        composed = parts[0]
        for part in parts[1:]:
            composed = composed + part
        return composed
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in CATALOGUE:
        raise InputError(f"unknown intervention {name!r}: the catalogue has {', '.join(CATALOGUE)}")
    params: dict[str, str] = {}
    last = None
    for piece in [p for p in rest.split(",") if p.strip()] if rest else []:
        if "=" in piece:
            last, value = (s.strip() for s in piece.split("=", 1))
            params[last] = value
        elif last is not None:
            params[last] += "," + piece.strip()
        else:
            raise InputError(f"{text!r}: expected key=value after '{name}:', got {piece!r}")
    cls = CATALOGUE[name]
    fields = _parameters(cls)
    for key in params:
        if key not in fields:
            raise InputError(f"{name}: unknown parameter {key!r}; it takes {', '.join(fields) or 'none'}")
    made = cls(**{k: _convert(cls, k, v, text) for k, v in params.items()})
    made.check_parameters()
    return made


def from_spec(spec: dict | str) -> Intervention:
    """Rebuild an intervention from `Intervention.spec()` (as saved in result provenance) or a string."""
    if isinstance(spec, str):
        return parse(spec)
    if not isinstance(spec, dict) or "name" not in spec:
        raise InputError(f"an intervention spec needs a 'name', got {spec!r}")
    if spec["name"] == "compose":
        members = [from_spec(m) for m in spec.get("members", [])]
        if not members:
            raise InputError("a composition needs members")
        return Compose(tuple(members))
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "name"}
    return get(spec["name"], **params)
