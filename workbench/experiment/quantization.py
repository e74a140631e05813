"""How much of the quantisation damage comes from the sink tokens? One report row per configuration, and
the sink share of the damage with its interval.

    >>> from workbench.experiment import quantization
    >>> res = quantization.report(model, data, quantization.kv_grid(bits=(2, 3, 4, 8), keep=("none", "bos")))
    >>> res.filter(metric="d_sink").df[["intervention", "bits", "keep", "value", "ci_low", "ci_high"]]

Per configuration (an intervention of the quantisation family, interventions.quant, or a composition of
them): `loss`, `delta_loss`, `kl`, `top1_agreement` and `perplexity` with bootstrap intervals over
sequences, from `experiment.run`. For every configuration that keeps tokens in full precision, the
sink share of the damage (audit practice; LITERATURE.md, "Quantising around sinks"):

    D_sink = delta_loss(nothing kept) - delta_loss(these tokens kept)

against its twin with `keep=none` (added to the run when missing), and `sink_share` = D_sink /
delta_loss(nothing kept). Both intervals are a paired bootstrap over the same sequences (each resample
draws sequences, and both configurations are scored on the ones drawn); the runner reports pooled rows
only, so this module computes the per-sequence losses of the configurations in a pair itself (one more
forward pass each) and checks them against the runner's loss. A configuration whose perplexity exceeds
`destroyed_factor` (10) x the baseline's is flagged `destroyed`; `averages` leaves it out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from interventions import Compose, Identity, Intervention
from interventions.quant import QuantizeActivations, QuantizeKV, Quantizer, QuantizeWeights
from workbench.core.errors import InputError
from workbench.core.metrics import SequenceStats, token_nll
from workbench.core.modelinfo import info
from workbench.core.results import Results
from workbench.experiment.runner import Unit, as_intervention, run
from workbench.passes import PassContext, device_of, forward

METRICS = ("loss", "delta_loss", "kl", "top1_agreement", "perplexity")
FAMILIES = {QuantizeKV: "kv", QuantizeActivations: "activations", QuantizeWeights: "weights"}


def kv_grid(bits: Sequence[int] = (2, 3, 4, 8), keep: Sequence[str] = ("none", "bos", "first:4"),
            granularity: str = "per-token", **params: Any) -> list[Intervention]:
    """`quantize-kv` for every (bits, keep) pair (IntactKV's figure: loss against bits, one line per keep).

        >>> kv_grid(bits=(2, 4), keep=("none", "bos"))      # 4 configurations
    """
    return [QuantizeKV(bits=b, keep=k, granularity=granularity, **params) for b in bits for k in keep]


def activation_grid(bits: Sequence[int] = (4, 8), granularity: Sequence[str] = ("per-tensor", "per-token"),
                    keep: Sequence[str] = ("none", "bos"), site: str = "linear", **params: Any) -> list[Intervention]:
    """`quantize-activations` for every (bits, granularity, keep): per-tensor vs per-token, with and without the sink.

        >>> activation_grid(bits=(8,), keep=("none", "bos"))
    """
    return [QuantizeActivations(bits=b, granularity=g, keep=k, site=site, **params)
            for b in bits for g in granularity for k in keep]


def _members(intervention: Intervention) -> tuple[Intervention, ...]:
    return intervention.members if isinstance(intervention, Compose) else (intervention,)


def _keeps(intervention: Intervention) -> bool:
    return any(isinstance(m, Quantizer) and m.keep_policy().spec is not None for m in _members(intervention))


def without_keep(intervention: Intervention) -> Intervention:
    """The same configuration with nothing kept in full precision (the reference of D_sink).

        >>> without_keep(parse("quantize-kv:bits=4,keep=bos"))      # quantize-kv(bits=4)
    """
    def plain(member: Intervention) -> Intervention:
        if not isinstance(member, Quantizer) or isinstance(member, QuantizeWeights):
            return member
        return type(member)(**{name: getattr(member, name) for name in member.given if name != "keep"})

    members = tuple(plain(m) for m in _members(intervention))
    return Compose(members) if isinstance(intervention, Compose) else members[0]


def describe(intervention: Intervention) -> dict[str, Any]:
    """The columns a report row carries: family, bits, granularity, keep, site (`+`-joined for compositions)."""
    members = [m for m in _members(intervention) if isinstance(m, Quantizer)]
    if not members:
        return {"family": None, "bits": None, "granularity": None, "keep": None, "site": None}

    def joined(values: list[Any]) -> Any:
        distinct = list(dict.fromkeys(values))
        return distinct[0] if len(distinct) == 1 else "+".join(str(v) for v in distinct)

    return {"family": "+".join(FAMILIES[type(m)] for m in members),
            "bits": joined([int(m.bits) if str(m.bits).isdigit() else m.bits for m in members]),
            "granularity": joined([getattr(m, "granularity", "per-channel") for m in members]),
            "keep": joined([m.keep_policy().text for m in members if not isinstance(m, QuantizeWeights)] or ["none"]),
            "site": joined([getattr(m, "site", "kv" if isinstance(m, QuantizeKV) else "linear") for m in members])}


def sequence_losses(model: Any, data: Any, intervention: Intervention, state: Any = None,
                    batch_size: int = 8) -> SequenceStats:
    """Per-sequence next-token loss (sums and counts, in the data's order) under an intervention.

        >>> sequence_losses(model, data, parse("quantize-kv:bits=4")).mean()    # the runner's `loss`
    """
    device = device_of(model)
    sums = np.zeros(len(data))
    counts = np.zeros(len(data))
    for index, tokens in data.batches(batch_size):
        tokens = tokens.to(device)
        sink = intervention.sink_spec() if intervention.sink_aware else "bos"
        ctx = PassContext.of(model, tokens, sink, state, index=index)
        with torch.no_grad():
            logits = forward(model, data.model_inputs(index, tokens).to(device), intervention.hooks(model, ctx))
        nll = token_nll(logits, tokens).double().cpu()
        sums[index] = nll.sum(-1).numpy()
        counts[index] = nll.shape[-1]
    return SequenceStats(sums, counts)


def _ratio_ci(numerator: np.ndarray, denominator: np.ndarray, n_boot: int, seed: int,
              alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap over sequences of sum(numerator) / sum(denominator), both resampled together."""
    if len(numerator) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(numerator), size=(n_boot, len(numerator)))
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = numerator[picks].sum(1) / denominator[picks].sum(1)
    boots = boots[np.isfinite(boots)]
    if not len(boots):
        return (math.nan, math.nan)
    return float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2))


def report(model: Any, data: Any, configs: Sequence[Intervention | str | dict], batch_size: int = 8, seed: int = 0,
           progress: bool = True, destroyed_factor: float = 10.0, experiment: str = "quantization") -> Results:
    """Report rows per quantisation configuration, plus `d_sink` and `sink_share` rows for those that keep tokens.

        >>> report(model, data, ["quantize-kv:bits=4", "quantize-kv:bits=4,keep=bos"])

    Rows carry `family`, `bits`, `granularity`, `keep`, `site` and `destroyed` (perplexity > destroyed_factor x
    the baseline's); `d_sink` / `sink_share` rows also name their `reference` (the keep=none twin) and are
    destroyed when either configuration is.
    """
    model_info = info(model)
    if not model_info.causal:
        raise InputError(f"a quantisation report scores next-token loss; {model_info.name} is not a causal LM: "
                         "run the quantisation interventions with experiment.run and an embedding metric")
    if not (isinstance(destroyed_factor, (int, float)) and destroyed_factor > 1):
        raise InputError(f"destroyed_factor must be a number > 1 (a multiple of the baseline perplexity), "
                         f"got {destroyed_factor!r}")
    chosen = [as_intervention(c) for c in configs]
    chosen = [c for c in chosen if not isinstance(c, Identity)]
    if not chosen:
        raise InputError("a quantisation report needs at least one configuration (e.g. quantize-kv:bits=4)")
    pairs: dict[str, str] = {}  # configuration -> its keep=none twin
    units: dict[str, Unit] = {}
    by_spec: dict[str, str] = {}  # one unit per distinct configuration, whatever its label

    def add(item: Intervention) -> str:
        spec = json.dumps(item.spec(), sort_keys=True, default=str)
        if spec not in by_spec:
            by_spec[spec] = str(item)
            units[str(item)] = Unit(str(item), item, describe(item))
        return by_spec[spec]

    for item in chosen:
        key = add(item)
        if _keeps(item):
            pairs[key] = add(without_keep(item))
    for unit in units.values():  # every configuration is checked before any forward pass
        unit.intervention.validate(model)
    states: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    for unit in units.values():
        key = unit.intervention.prepare_key()
        if key not in shared:
            shared[key] = unit.intervention.prepare(model, data, batch_size, progress)
        states[unit.key] = shared[key]
    results = run(model, data, units=list(units.values()), states=states, metrics=METRICS, batch_size=batch_size,
                  seed=seed, progress=progress, experiment=experiment)
    rows = results.rows
    perplexity = {r["intervention"]: float(r["value"]) for r in rows if r["metric"] == "perplexity"}  # "inf" too
    base_perplexity = perplexity["none"]
    destroyed = {key: not value <= destroyed_factor * base_perplexity for key, value in perplexity.items()}
    for row in rows:
        row["destroyed"] = destroyed.get(row["intervention"], False)

    needed = sorted(set(pairs) | set(pairs.values()))
    per_sequence = {"none": sequence_losses(model, data, Identity(), None, batch_size)} if pairs else {}
    for key in needed:
        per_sequence[key] = sequence_losses(model, data, units[key].intervention, states[key], batch_size)
        runner_loss = next(r["value"] for r in rows if r["intervention"] == key and r["metric"] == "loss")
        if abs(per_sequence[key].mean() - runner_loss) > 1e-4 * max(1.0, abs(runner_loss)):
            raise InputError(f"{key}: the per-sequence losses ({per_sequence[key].mean():.6f}) disagree with the "
                             f"runner's ({runner_loss:.6f}); is the intervention deterministic?")
    base = per_sequence.get("none")
    for key, twin in pairs.items():
        kept, nothing = per_sequence[key], per_sequence[twin]
        d_sink = nothing.paired_minus(kept)  # per sequence: loss(nothing kept) - loss(kept); baselines cancel
        flag = destroyed[key] or destroyed[twin]
        columns = {**units[key].columns, "reference": twin, "destroyed": flag}
        rows.append({"experiment": experiment, "intervention": key, **d_sink.row("d_sink", seed=seed), **columns})
        damage = nothing.paired_minus(base)  # delta_loss(nothing kept) per sequence
        share = float(d_sink.sums.sum() / damage.sums.sum()) if damage.sums.sum() > 0 else math.nan
        low, high = _ratio_ci(d_sink.sums, damage.sums, 1000, seed) if math.isfinite(share) else (math.nan, math.nan)
        rows.append({"experiment": experiment, "intervention": key, "metric": "sink_share", "value": share,
                     "n": d_sink.n, "n_sequences": len(d_sink), "ci_low": low, "ci_high": high, **columns})
    header = {**results.provenance, "destroyed_factor": destroyed_factor, "baseline_perplexity": base_perplexity,
              "d_sink_pairs": pairs}
    return Results(rows, header)


def averages(results: Results, by: Sequence[str] = ("family", "granularity", "keep"),
             metrics: Sequence[str] = ("delta_loss", "kl", "top1_agreement", "d_sink", "sink_share")) -> Results:
    """Mean over configurations (over bits, say) of each metric per group, leaving destroyed ones out.

        >>> averages(report(model, data, kv_grid()), by=("keep",)).df

    Rows: the group's columns, `metric`, `value` (NaN when every configuration was destroyed),
    `n_configurations` (averaged) and `n_destroyed` (left out).
    """
    groups: dict[tuple, dict[str, list]] = {}
    for row in results:
        if row.get("metric") not in metrics or row.get("family") is None:
            continue
        key = tuple(row.get(column) for column in by) + (row["metric"],)
        slot = groups.setdefault(key, {"values": [], "destroyed": 0})
        if row.get("destroyed"):
            slot["destroyed"] += 1
        elif row.get("value") is not None:
            slot["values"].append(float(row["value"]))
    out = []
    for key, slot in groups.items():
        values = slot["values"]
        out.append({"experiment": "quantization-average", **dict(zip(by, key[:-1])), "metric": key[-1],
                    "value": float(np.mean(values)) if values else math.nan, "n_configurations": len(values),
                    "n_destroyed": slot["destroyed"]})
    return Results(out, {**results.provenance, "averaged_by": list(by)})
