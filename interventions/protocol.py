"""The intervention protocol: small value objects that turn into TransformerLens hooks.

    >>> iv = get("scale-sink", gamma=0.5, layers="3-10")       # validate(model) fails before any forward
    >>> both = iv + get("zero-sink-value", layers=20)          # composition

An intervention is a frozen dataclass: its fields are its declared parameters, its repr is readable
(`scale-sink(gamma=0.5, layers='3-10')`), `spec()` is saved in a result's provenance and
`from_spec` rebuilds it (interventions.parsing). It carries no model state between runs: statistics that
an intervention needs (the means of `mean-implicit-bias`, a patch source's values) are computed by
`prepare` for each run and handed back through the context (`ctx.state`, a workbench.passes.PassContext);
`describe_state` says what of that state belongs in a result's provenance.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from workbench.core import sites
from workbench.core.errors import InputError
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


@dataclasses.dataclass(frozen=True)
class Intervention:
    """Base of every intervention (see the module docstring)."""

    name: ClassVar[str] = "intervention"
    summary: ClassVar[str] = ""
    causal_only: ClassVar[bool] = False  # needs a causal mask (refused on encoders)
    sink_aware: ClassVar[bool] = False  # uses the sink key / query masks
    changes_length: ClassVar[bool] = False  # adds positions (a test-time register): runs alone, not composed

    def validate(self, model: Any) -> None:
        """Raise InputError for parameters that do not fit this model; runs before any forward pass."""
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
        """Every declared parameter (defaults included), JSON-ready: what provenance records."""
        out: dict[str, Any] = {"name": self.name}
        for field in dataclasses.fields(self):
            if field.compare and field.init:
                value = getattr(self, field.name)
                out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    def __str__(self) -> str:
        """`name(non-default parameters)`, or just `name` when every parameter has its default."""
        shown = []
        for field in dataclasses.fields(self):
            if field.compare and field.init:
                value = getattr(self, field.name)
                default = field.default if field.default is not dataclasses.MISSING else None
                if value != default:
                    shown.append(f"{field.name}={value!r}")
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
        return dataclasses.replace(self, **changes)


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
                key = spec.key_mask(ctx.tokens, model)
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
