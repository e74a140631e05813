"""The intervention protocol: small value objects that turn into TransformerLens hooks.

    >>> iv = get("scale-sink", gamma=0.5, layers="3-10")       # validate(model) fails before any forward
    >>> both = iv + get("zero-sink-value", layers=20)          # composition

An intervention is a frozen dataclass: its fields are its declared parameters, its repr is readable
(`scale-sink(layers='3-10', gamma=0.5)`: every parameter that was given, even at its default value, and
every one that differs from its default), `spec()` is saved in a result's provenance and
`from_spec` rebuilds it (interventions.parsing). Parameters are checked when the object is made: a float
parameter must be a finite number (NaN would make most edits silent no-ops), an int one an integer. It carries no model state between runs: statistics that
an intervention needs (the means of `mean-implicit-bias`, a patch source's values) are computed by
`prepare` for each run and handed back through the context (`ctx.state`, a workbench.passes.PassContext);
`describe_state` says what of that state belongs in a result's provenance.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

from workbench.core import sites
from workbench.core.errors import InputError, check_number, is_integer
from workbench.core.modelinfo import info
from workbench.core.sites import SinkSpec
from workbench.passes import Hook, PassContext

CATALOGUE: dict[str, type[Intervention]] = {}

def register(name: str, summary: str = ""):
    """Class decorator: add an intervention to the catalogue under `name` (then it works in the runner,
    the CLI and TOML specs)."""
    def wrap(cls):
        if "__dataclass_fields__" not in cls.__dict__:  # a plain subclass: make its own fields parameters
            cls = dataclasses.dataclass(frozen=True)(cls)
        if name in CATALOGUE and CATALOGUE[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"intervention {name!r} is registered twice")
        doc = (cls.__doc__ or "").strip()
        cls.name = name
        cls.summary = summary or (doc.splitlines()[0] if doc else name)
        CATALOGUE[name] = cls
        return cls
    return wrap


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


def parameters(cls: type) -> list[dataclasses.Field]:
    """The declared parameters of an intervention class (its init fields that take part in equality)."""
    return [f for f in dataclasses.fields(cls) if f.init and f.compare]


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a type the annotations' module cannot resolve: read the names
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for key, text in getattr(klass, "__annotations__", {}).items():
                out[key] = {"float": float, "int": int, "bool": bool, "str": str}.get(text, text)
        return out


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class Intervention:
    """Base of every intervention (see the module docstring)."""

    name: ClassVar[str] = "intervention"
    summary: ClassVar[str] = ""
    causal_only: ClassVar[bool] = False  # needs a causal mask (refused on encoders)
    sink_aware: ClassVar[bool] = False  # uses the sink key / query masks
    changes_length: ClassVar[bool] = False  # adds positions (a test-time register): runs alone, not composed

    def __new__(cls, *args: Any, **kwargs: Any):
        # remember which parameters were given (a label names them even at their default value)
        obj = super().__new__(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        object.__setattr__(obj, "_given", frozenset(names[:len(args)]) | frozenset(kwargs))
        return obj

    def __post_init__(self) -> None:
        for field in parameters(self):
            value = _freeze(getattr(self, field.name))
            if field.name == "sink":
                spec = SinkSpec.parse(value)  # a malformed sink fails here, when the intervention is made
                if spec.kind in ("mask", "callable"):
                    value = spec  # one hashable value, compared by content (masks) or identity (functions)
            object.__setattr__(self, field.name, value)
        self.check_parameters()

    def check_parameters(self) -> None:
        """Types every declared parameter must have, whatever the model: a float parameter a finite number
        (NaN compares False with every bound, so it would pass range checks and silently change nothing),
        an int one an integer, a bool one a bool, a str one a string."""
        hints = _hints(type(self))
        for field in parameters(self):
            value, kind, what = getattr(self, field.name), hints.get(field.name), f"{self.name}: {field.name}"
            if kind is float or (isinstance(value, float) and kind not in (int, bool, str)):
                check_number(what, value)
            elif kind is int and not is_integer(value):
                raise InputError(f"{what} must be an integer, got {value!r}")
            elif kind is bool and not isinstance(value, bool):
                raise InputError(f"{what} must be true or false, got {value!r}")
            elif kind is str and not isinstance(value, str):
                raise InputError(f"{what} must be a string, got {value!r}")

    def validate(self, model: Any) -> None:
        """Raise InputError for parameters that do not fit this model; runs before any forward pass."""
        self.check_parameters()
        model_info = info(model)
        if self.causal_only and not model_info.causal:
            kind = "image model" if model_info.is_image else "encoder"
            raise InputError(f"{self} needs a causal mask; {model_info.name} is a bidirectional {kind}")

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        """Statistics this intervention needs from the evaluated data (a first, read-only pass); default none."""
        return None

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        raise NotImplementedError

    def prepare_key(self) -> str:
        """Interventions with equal keys share one `prepare` pass within a run (override to ignore
        parameters that do not change the statistics)."""
        import json

        return json.dumps(self.spec(), sort_keys=True, default=str)

    def describe_state(self, state: Any) -> dict | None:
        """What of a prepared state a result's provenance should record (e.g. the layer and dimensions a
        massive-activation edit found); default nothing."""
        return None

    def sink_spec(self) -> SinkSpec:
        return SinkSpec.parse(getattr(self, "sink", "bos"))

    # -- value-object behaviour --------------------------------------------------------------------
    def spec(self) -> dict:
        """Every declared parameter (defaults included), JSON-ready: what provenance records (a sink given
        as a mask or a function is recorded by its label)."""
        out: dict[str, Any] = {"name": self.name}
        for field in parameters(self):
            value = getattr(self, field.name)
            if isinstance(value, SinkSpec):
                value = value.label
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def given(self) -> frozenset[str]:
        """The parameters that were given when this intervention was made (the rest took their defaults)."""
        return self.__dict__.get("_given", frozenset())

    def __str__(self) -> str:
        """`name(parameters)`: every parameter that was given (even at its default value) or differs from its
        default, in declaration order; just `name` when none was given and all have their defaults."""
        shown = []
        for field in parameters(self):
            value = getattr(self, field.name)
            default = field.default if field.default is not dataclasses.MISSING else None
            if field.name in self.given or value != default:
                shown.append(f"{field.name}={value.label!r}" if isinstance(value, SinkSpec) else
                             f"{field.name}={value!r}")
        return f"{self.name}({', '.join(shown)})" if shown else self.name

    __repr__ = __str__

    def __add__(self, other: Intervention) -> Compose:
        if not isinstance(other, Intervention):
            return NotImplemented
        left = self.members if isinstance(self, Compose) else (self,)
        right = other.members if isinstance(other, Compose) else (other,)
        return Compose(left + right)

    def scoped(self, **changes: Any) -> Intervention:
        """The same intervention with some parameters replaced (sweeps use it for layer/head scopes)."""
        new = dataclasses.replace(self, **changes)
        object.__setattr__(new, "_given", self.given | frozenset(changes))
        return new


@dataclasses.dataclass(frozen=True)
class Compose(Intervention):
    """Several interventions applied together, in order (`a + b`)."""

    members: tuple[Intervention, ...] = ()
    name: ClassVar[str] = "compose"

    def validate(self, model: Any) -> None:
        if not self.members:
            raise InputError("an empty composition")
        growing = [m for m in self.members if m.changes_length]
        if growing:
            raise InputError(f"{growing[0]} adds positions to the sequence, so it cannot be composed with other "
                             "interventions (their masks are for the original positions); run it on its own")
        for member in self.members:
            member.validate(model)

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        return [m.prepare(model, data, batch_size, progress) for m in self.members]

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        out: list[Hook] = []
        states = ctx.state or [None] * len(self.members)
        for member, state in zip(self.members, states):
            member_ctx = dataclasses.replace(ctx, state=state)
            if member.sink_aware and member.sink_spec() != SinkSpec():
                spec = member.sink_spec()
                key = spec.key_mask(ctx.tokens, model, index=ctx.index)
                member_ctx = dataclasses.replace(member_ctx, sink=key, queries=sites.query_mask(key, info(model).causal))
            out += member.hooks(model, member_ctx)
        return out

    def spec(self) -> dict:
        return {"name": "compose", "members": [m.spec() for m in self.members]}

    def __str__(self) -> str:
        return " + ".join(str(m) for m in self.members)

    __repr__ = __str__


@register("none", "no intervention: the baseline (reproduces the model's logits exactly)")
@dataclasses.dataclass(frozen=True)
class Identity(Intervention):
    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        return []
