"""Model x data x interventions x metrics -> Results: the experiment runner.

    >>> res = run(model, data, ["mask-sink", "zero-implicit-bias", "mean-implicit-bias"])
    >>> res.filter(metric="delta_loss").df[["intervention", "value", "ci_low", "ci_high"]]
    >>> sweep(model, data, "zero-implicit-bias", over="head", out="out/sweep.json")   # resumable

One baseline pass and one pass per intervention, batched. Several interventions share one forward
pass where the batch is small (their rows are stacked; each intervention's hooks touch only its
rows), and the baseline's logits are kept in memory while they fit, so a sweep over 270 heads costs
about 270 forward passes, not 540. With `out=`, every intervention is journaled as it finishes
(`ResultStore`, fsynced): a sweep killed half-way resumes without recomputing them, and a rerun of a
finished run reuses its file (`force=True` recomputes).

The passes are cut into pure jobs (model name and checksum, data and its hash, stacks of units) -> the rows of
whole units, handed to an executor (workbench.experiment.executors): `local` runs them here, `ray` on Ray
workers that keep the model loaded. The stacks are the same either way and this process alone writes the
journal and the file, so a run writes the same rows wherever its jobs ran.

Metrics (see workbench.core.metrics): causal LMs `loss`, `delta_loss`, `kl`, `top1_agreement` and, with a
token pair, `logit_diff`; encoders `embedding_cosine` (mean-pooled final residual stream vs the
baseline's) and `embedding_change` (||e' - e|| / ||e||), because a checkpoint without a trained LM head
(MiniLM) has logits that mean nothing; image classifiers `accuracy`, `delta_accuracy`, `logit_change`
(the change of the true class's logit), `kl` and `top1_agreement` of the class distribution. Every value
comes with a bootstrap interval over sequences (images). Image sets (workbench.vision.images) enter
through the same loop: the model is called on `data.model_inputs(index, tokens)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from interventions import Identity, Intervention, from_spec, parse
from workbench import attention
from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.errors import InputError, InterventionError, check_list, check_number, check_range
from workbench.core.metrics import SequenceStats, all_finite
from workbench.core.modelinfo import info
from workbench.core.progress import progress_bar
from workbench.core.results import Results, ResultStore, cached, check_output_path, provenance
from workbench.experiment import executors
from workbench.experiment.executors import Executor, LocalExecutor, ModelRef, Shared, WorkerState
from workbench.experiment.scoring import scorer_for
from workbench.passes import Hook, PassContext, check_data, device_of

_LOGIT_CACHE_BYTES = 768 * 2**20
_TOKENS_PER_FORWARD = 8192  # interventions stacked into one pass hold at most this many tokens (issue 14)


def as_intervention(item: Intervention | str | dict) -> Intervention:
    if isinstance(item, Intervention):
        return item
    if isinstance(item, dict):
        return from_spec(item)
    if isinstance(item, str):
        return parse(item)
    raise InputError(f"not an intervention: {item!r}; give a name ('mask-sink'), a string with parameters "
                     "('scale-sink:gamma=0.5'), a spec dict or an Intervention")


def resolve_pair(model: Any, pair: Any) -> tuple[int, int] | None:
    """A token pair given as ids or as strings (each must be one token) -> two ids."""
    if pair is None:
        return None
    pair = check_list("logit pair", pair, "('Paris', 'London') or (3681, 5466)")
    if len(pair) != 2:
        raise InputError(f"a logit pair needs exactly two tokens, got {pair!r}")
    model_info = info(model)
    out = []
    for item in pair:
        if isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
            token = int(item)
        else:
            ids = model_info.tokenizer(item, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise InputError(f"logit pair token {item!r} is {len(ids)} tokens for {model_info.name}; give one token "
                                 "(mind the leading space) or its id")
            token = ids[0]
        if not 0 <= token < model_info.vocab_size:
            raise InputError(f"logit pair id {token} is outside the vocabulary: allowed 0..{model_info.vocab_size - 1}")
        out.append(token)
    return out[0], out[1]


@contextlib.contextmanager
def hooked(model: Any, intervention: Intervention | str, tokens: torch.Tensor, data: Dataset | None = None,
           state: Any = None, index: Sequence[int] | None = None) -> Iterator[PassContext]:
    """Run the model under one intervention, baukit-style.

        >>> with hooked(model, "mask-sink", tokens):
        ...     logits = model(tokens)

    Interventions that need statistics (`mean-*`, `patch-values`) take them from `data` (a first pass)
    or from `state`. `index`: which sequences of the data the rows of `tokens` are (a sink given as a
    [sequences, T] mask takes those rows; default 0..b-1).
    """
    intervention = as_intervention(intervention)
    intervention.validate(model)
    if state is None and data is not None:
        state = intervention.prepare(model, data)
    ctx = PassContext.of(model, tokens, intervention.sink_spec() if intervention.sink_aware else "bos", state,
                         index=index)
    with model.hooks(fwd_hooks=intervention.hooks(model, ctx)):
        yield ctx


def batch_hooks(model: Any, intervention: Intervention | str | dict | None, data: Any,
                batch_size: int = 8) -> tuple[list[Hook], dict | None]:
    """The hooks of an intervention that depends on no batch (a test-time register), ready for a probe's
    `hooks=`, and its spec for the probe's provenance; (no hooks, None) for no intervention.

        >>> hooks, spec = batch_hooks(model, "test-time-register", images)
        >>> probes.image_attention(model, images, hooks=hooks, hooks_spec=spec)
    """
    if intervention is None:
        return [], None
    intervention = as_intervention(intervention)
    intervention.validate(model)
    if intervention.sink_aware:
        raise InputError(f"{intervention} depends on each batch's sink positions; image probes run under "
                         "batch-independent interventions only (test-time-register)")
    state = intervention.prepare(model, data, batch_size)
    return intervention.hooks(model, PassContext.batch_independent(model, state)), intervention.spec()


# --------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Unit:
    key: str
    intervention: Intervention
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Accumulator:
    stats: dict[str, SequenceStats] = dataclasses.field(default_factory=dict)

    def add(self, metric: str, value: SequenceStats) -> None:
        self.stats[metric] = self.stats[metric] + value if metric in self.stats else value


def _labels(data: Any, index: Sequence[int]) -> torch.Tensor | None:
    """Class labels of these rows: image sets carry them (`ImageSet.labels`); token datasets have none."""
    labels = getattr(data, "labels", None)
    return None if labels is None else torch.as_tensor(labels[list(index)])


def _first_nonfinite_layer(model: Any, unit: Unit, tokens: torch.Tensor, inputs: torch.Tensor, state: Any,
                           index: Sequence[int]) -> int | None:
    """Re-run one intervention alone and report the first block whose residual stream is not finite."""
    model_info = info(model)
    seen: list[int] = []

    def check(layer: int):
        def fn(tensor: torch.Tensor, hook: Any) -> None:
            if not seen and not all_finite(tensor):
                seen.append(layer)
        return fn

    ctx = PassContext.of(model, tokens, unit.intervention.sink_spec(), state, index=index)
    hooks = unit.intervention.hooks(model, ctx) + [(sites.resid(layer), check(layer))
                                                   for layer in range(model_info.n_layers)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        model(inputs)
    return seen[0] if seen else None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sink_digest(unit: Unit, model: Any, batches: list) -> str | None:
    """For a sink given as a function (its label is only a name), a hash of the keys it resolves to on this
    data, so that a changed function is a different run; None for sinks their spec fully determines."""
    spec = unit.intervention.sink_spec()
    if spec.kind != "callable":
        return None
    digest = hashlib.sha256()
    for index, tokens, _ in batches:
        digest.update(spec.key_mask(tokens, model, index=index).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class _Scoring:
    """What turns forward passes into rows, besides the model and the data (every job carries it)."""

    experiment: str
    metrics: tuple[str, ...]
    pair: tuple[int, int] | None
    seed: int
    batch_size: int
    attention_block: Any = None  # workbench.attention.policy of the passes (a Ray worker applies it to its model)


class _Passes:
    """One model on one dataset: the batches, and the baseline's outputs while they fit in memory."""

    def __init__(self, model: Any, data: Any, batch_size: int):
        self.model, self.data = model, data
        self.model_info = info(model)
        self.scorer = scorer_for(self.model_info)
        self.device = device_of(model)
        self.batches = [(index, tokens, data.model_inputs(index, tokens)) for index, tokens in data.batches(batch_size)]
        width = self.model_info.vocab_size if self.model_info.causal else self.model_info.d_model
        self.length = max(t.shape[1] for _, t, _ in self.batches)
        if getattr(self.scorer, "long", None) is not None and self.scorer.long(self.length):
            width = self.model_info.d_model  # a long sequence's output is its final residual stream (scoring.py)
        self.keep_baseline = sum(t.numel() for _, t, _ in self.batches) * width * 4 <= _LOGIT_CACHE_BYTES
        self.rows_per_batch = max(1, max(t.shape[0] for _, t, _ in self.batches))
        self._baseline: dict[int, torch.Tensor] = {}

    def baseline_output(self, b: int, inputs: torch.Tensor, tick: Callable[[], None] | None) -> torch.Tensor:
        if b in self._baseline:
            return self._baseline[b]
        with torch.no_grad():
            output = self.scorer.outputs(self.model, inputs, [])
        if tick is not None:
            tick()
        if not all_finite(output):
            raise InterventionError(f"the baseline forward pass of {self.model_info.name} is not finite")
        if self.keep_baseline:
            self._baseline[b] = output
        return output

    def score(self, stacks: list[list[Unit]], states: dict[str, Any], scoring: _Scoring,
              baseline: _Accumulator | None = None, tick: Callable[[], None] | None = None) -> dict[str, _Accumulator]:
        """Per-sequence statistics of every unit of `stacks` (each stack one forward pass per batch) over all
        the data, against the baseline; with `baseline`, the baseline's own statistics are added to it."""
        model, scorer, pair = self.model, self.scorer, scoring.pair
        accumulators = {u.key: _Accumulator() for stacked in stacks for u in stacked}
        for b, (index, tokens, inputs) in enumerate(self.batches):
            tokens, inputs = tokens.to(self.device), inputs.to(self.device)
            labels = _labels(self.data, index)
            base = self.baseline_output(b, inputs, tick)
            base_stats = scorer.baseline(base, tokens, pair, labels)
            if baseline is not None:
                for metric, value in base_stats.items():
                    baseline.add(metric, value)
            reference = scorer.reference(base) if stacks else None
            for stacked in stacks:
                n = tokens.shape[0]
                big = inputs.repeat(len(stacked), *([1] * (inputs.dim() - 1)))
                scratch: dict = {}
                hooks = []
                for j, unit in enumerate(stacked):
                    spec = unit.intervention.sink_spec()
                    key = spec.key_mask(tokens, model, index=index)
                    ctx = PassContext(model, tokens, slice(j * n, (j + 1) * n), key,
                                      sites.query_mask(key, self.model_info.causal), states.get(unit.key), scratch,
                                      index=list(index))
                    hooks += unit.intervention.hooks(model, ctx)
                with torch.no_grad():
                    output = scorer.outputs(model, big, hooks)
                if tick is not None:
                    tick()
                for j, unit in enumerate(stacked):
                    piece = output[j * n:(j + 1) * n]
                    if not all_finite(piece):
                        layer = _first_nonfinite_layer(model, unit, tokens, inputs, states.get(unit.key), index)
                        where = f" (first non-finite residual stream after layer {layer})" if layer is not None else ""
                        raise InterventionError(f"intervention {unit.key} produced NaN/inf outputs{where}")
                    for metric, value in scorer.unit(piece, base, tokens, pair, base_stats, labels,
                                                     reference).items():
                        accumulators[unit.key].add(metric, value)
        return accumulators


def _passes_key(model: ModelRef, data_key: str, batch_size: int) -> tuple:
    """What a worker keeps a `_Passes` (batches, baseline logits) under: the model, the data, the batching."""
    return "passes", model, data_key, batch_size


@dataclasses.dataclass
class _UnitsJob:
    """A pure job: (model name and checksum, data and its hash, stacks of units, shard) -> the rows of whole
    units over all the data, so each unit's value and interval are computed in one place; the first job of a
    run also returns the baseline's rows."""

    number: int
    model: ModelRef
    data: Shared
    states: Shared
    stacks: list[list[Unit]]
    scoring: _Scoring
    baseline: bool = False

    def describe(self) -> str:
        keys = [u.key for stacked in self.stacks for u in stacked]
        return (f"job {self.number + 1} of {self.scoring.experiment} on {self.model.name} (units {keys[0]}"
                + (f" .. {keys[-1]}, {len(keys)} in all)" if len(keys) > 1 else ")"))

    def passes_key(self) -> tuple:
        return _passes_key(self.model, self.data.key, self.scoring.batch_size)

    def run(self, state: WorkerState) -> tuple[dict[str, list[dict]], list[dict] | None]:
        model = state.model(self.model)
        data = state.get(self.data)
        s = self.scoring
        passes = state.keep(self.passes_key(), lambda: _Passes(model, data, s.batch_size))
        baseline = _Accumulator() if self.baseline else None
        with attention.policy(model, s.attention_block) if s.attention_block is not None \
                and attention.active(model) is None else contextlib.nullcontext():  # (here: the run's own is open)
            found = passes.score(self.stacks, state.get(self.states), s, baseline, state.tick)
        rows = {u.key: _rows(u.key, found[u.key], s.metrics, s.seed, u.columns, s.experiment)
                for stacked in self.stacks for u in stacked}
        return rows, (_rows("none", baseline, s.metrics, s.seed, {}, s.experiment) if baseline is not None else None)


def run(model: Any, data: Dataset, interventions: Sequence[Intervention | str | dict] = (),
        metrics: Sequence[str] | None = None, batch_size: int = 8, seed: int = 0, out: str | Path | None = None,
        resume: bool = True, progress: bool = True, logit_pair: Any = None, rows_per_forward: int = 16,
        units: Sequence[Unit] | None = None, states: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        experiment: str = "run", units_per_chunk: int | None = None, force: bool = False,
        flush_seconds: float = 5.0, log: Callable[[str], None] | None = None,
        executor: Executor | str | dict | None = None, attention_block: Any = None) -> Results:
    """Baseline + one pass per intervention over `data`; tidy rows per (intervention, metric).

        >>> run(model, data, ["mask-sink", "scale-sink:gamma=0.5,layers=3-10"], out="out/run.json")
        >>> run(model, data, interventions, executor={"kind": "ray", "workers": 4})   # same rows, on Ray

    Rows: {"intervention": str, "metric": ..., "value", "n", "ci_low", "ci_high"}; the baseline is
    intervention "none" (in the returned Results and in the `out` file alike). `rows_per_forward` bounds how
    many sequences one forward pass holds when interventions are stacked.

    With `out`, every finished unit is journaled (appended and fsynced) as soon as its forward passes are
    done, so a crash loses only the units in flight: those stacked in one forward pass, or, when the baseline
    logits do not fit in memory (and are recomputed per group of units), at most about `flush_seconds` of work.
    `units_per_chunk` fixes that group size instead. A rerun resumes an unfinished journal; a finished `out`
    file made by the same run (model weights, data hash, interventions, metrics, seed) is reused as it is,
    with a message (`log`, default stderr); `force=True` recomputes everything.

    `executor`: where the forward passes run (workbench.experiment.executors): "local" (default, this
    process), "ray" or a table of Ray options, or an Executor the caller keeps open across runs. Every
    executor writes the same rows; the journal does not depend on it, so a run killed on Ray resumes locally
    and the other way round.

    `attention_block`: how every attention of the run's passes runs (workbench.attention.policy): None or
    "auto" (full while the pattern fits the budget, blockwise otherwise), "full" (refused before a pass whose
    pattern would not fit) or B query rows per block; the rows are the same within float rounding.
    """
    block = attention.parse_block(attention_block)  # a bad value fails here, before any pass
    options = {**locals(), "attention_block": block}
    del options["block"]
    with attention.policy(model, block) if block is not None else contextlib.nullcontext():
        return _run(**options)


def _run(model: Any, data: Dataset, interventions: Sequence[Intervention | str | dict], metrics: Sequence[str] | None,
         batch_size: int, seed: int, out: str | Path | None, resume: bool, progress: bool, logit_pair: Any,
         rows_per_forward: int, units: Sequence[Unit] | None,
         states: dict[str, Any] | Callable[[], dict[str, Any]] | None, experiment: str,
         units_per_chunk: int | None, force: bool, flush_seconds: float, log: Callable[[str], None] | None,
         executor: Executor | str | dict | None, attention_block: Any) -> Results:
    """`run` inside its attention policy (`attention_block` is what the Ray jobs apply and provenance records)."""
    started = time.perf_counter()
    say = log or _say
    model_info = info(model)
    check_range("rows_per_forward", rows_per_forward, 1, 1 << 20)
    check_range("seed", seed, 0, 2**63 - 1)
    if units_per_chunk is not None:
        check_range("units_per_chunk", units_per_chunk, 1, 1 << 20)
    flush_seconds = check_number("flush_seconds", flush_seconds, low=0.0)
    if not isinstance(executor, Executor):
        executors.check_options(executor)  # a bad option fails before any pass
    scorer = scorer_for(model_info)
    if metrics is not None:
        metrics = check_list("metrics", metrics, "['loss', 'kl']")
    chosen = scorer.check(metrics, logit_pair)
    if model_info.family == "image-classifier" and getattr(data, "labels", None) is None:
        if metrics is not None and {"accuracy", "delta_accuracy"} & set(chosen):
            raise InputError("metric accuracy needs class labels; these images have none (give labels=)")
        chosen = tuple(m for m in chosen if m not in ("accuracy", "delta_accuracy"))
    pair = resolve_pair(model, logit_pair)
    check_data(model, data)
    if units is None:
        units = []
        seen: dict[str, int] = {}
        for item in check_list("interventions", interventions, "['mask-sink', 'scale-sink:gamma=0.5']"):
            intervention = as_intervention(item)
            key = str(intervention)
            seen[key] = seen.get(key, 0) + 1
            units.append(Unit(key if seen[key] == 1 else f"{key}#{seen[key]}", intervention))
    units = [u for u in units if not isinstance(u.intervention, Identity)]
    for unit in units:  # every intervention is checked before any forward pass
        unit.intervention.validate(model)
    if out is not None:
        check_output_path(out)
    passes = _Passes(model, data, batch_size)
    for unit in units:  # data-dependent checks (sink positions, tokens present, mask shapes) also before any pass
        spec = unit.intervention.sink_spec()
        for index, tokens, _ in passes.batches:
            sites.query_mask(spec.key_mask(tokens, model, index=index), model_info.causal)
    sink_digests = {u.key: d for u in units if (d := _sink_digest(u, model, passes.batches)) is not None}
    identity = {"experiment": experiment, "model": model_info.name, "weights": model_info.weights_sha256,
                "data": data.hash(), "units": [[u.key, u.intervention.spec(), u.columns] for u in units],
                "metrics": list(chosen), "seed": seed, "logit_pair": list(pair) if pair else None,
                "sink_masks": sink_digests or None, "format": 2}  # 2: the file holds the baseline rows too
    if out is not None and not force and (finished := cached(out, identity)) is not None:
        say(f"{experiment}: reusing {out}: it was finished by the same run (same model, data hash "
            f"{identity['data'][:12]}, interventions, metrics and seed); pass force=True (--force) to recompute")
        finished.provenance["reused"] = str(out)
        return finished
    store = ResultStore(out, identity, resume=resume and not force) if out is not None else None
    todo = [u for u in units if store is None or not store.done(u.key)]
    if callable(states):  # computed only when some unit still needs computing (sweeps share one first pass)
        states = states() if todo else {}
    states = dict(states or {})
    prepared_info = {}
    shared: dict[str, Any] = {}
    for unit in todo:
        if unit.key not in states:
            key = unit.intervention.prepare_key()
            if key not in shared:
                shared[key] = unit.intervention.prepare(model, data, batch_size, progress)
            states[unit.key] = shared[key]
        described = unit.intervention.describe_state(states[unit.key])
        if described is not None:
            prepared_info[unit.key] = described

    scoring = _Scoring(experiment, tuple(chosen), pair, seed, batch_size, attention_block)
    stack = max(1, rows_per_forward // passes.rows_per_batch)
    # long sequences: at most _TOKENS_PER_FORWARD tokens per stacked pass (memory grows with the pass's tokens)
    stack = max(1, min(stack, _TOKENS_PER_FORWARD // (passes.rows_per_batch * passes.length)))
    rows: list[dict] = []
    baseline_rows: list[dict] | None = None
    total_steps = len(passes.batches) * (-(-len(todo) // stack) + 1) if todo else len(passes.batches)
    bar = iter(progress_bar(range(total_steps), desc=experiment, enabled=progress, total=total_steps))
    with executors.using(executor) as pool:
        local = isinstance(pool, LocalExecutor)
        if store is None and local:
            chunk = max(len(todo), 1)  # nothing to journal: every unit shares each batch's baseline pass
        elif units_per_chunk is not None:
            chunk = max(stack, units_per_chunk)
        else:  # journal each stack as it finishes (a job each on Ray); bigger groups when the baseline is recomputed
            chunk = stack if passes.keep_baseline or local else 16 * stack
        adaptive = local and store is not None and units_per_chunk is None and not passes.keep_baseline
        plan = {"chunk": chunk, "started": 0.0}
        worker = WorkerState(model=model, tick=lambda: next(bar, None))  # the local executor's: this model

        def jobs(model_ref: ModelRef, data_ref: Shared, states_ref: Shared) -> Iterator[_UnitsJob]:
            start = number = 0
            while start < len(todo):
                group = todo[start:start + plan["chunk"]]
                start += len(group)
                plan["started"] = time.perf_counter()
                yield _UnitsJob(number, model_ref, data_ref, states_ref, list(_stacks(group, stack)), scoring,
                                baseline=number == 0)
                number += 1

        if todo:
            if local:
                refs = (ModelRef(model_info.name, "this process"), Shared("data", data), Shared("states", states))
                worker.keep(_passes_key(refs[0], "data", batch_size), lambda: passes)  # its batches and baseline
            else:
                refs = (ModelRef.of(model), pool.share(f"data:{identity['data'][:16]}", data),
                        pool.share("states", states))
                say(f"{experiment}: {len(todo)} units, up to {chunk} a job; {executors.describe(pool)}")
            for job_rows, job_baseline in pool.map(jobs(*refs), worker):
                for key, unit_rows in job_rows.items():
                    if store is not None:
                        store.add(key, unit_rows)
                    rows += unit_rows
                if job_baseline is not None:
                    baseline_rows = job_baseline
                if not local:  # the workers' passes, counted as their rows come back
                    for _ in range(len(passes.batches) * -(-len(job_rows) // stack)):
                        next(bar, None)
                if adaptive and time.perf_counter() - plan["started"] < flush_seconds / 2:
                    plan["chunk"] = min(plan["chunk"] * 2, 16 * stack)  # amortise the recomputed baseline
        if baseline_rows is None:  # everything was resumed: the baseline still needs its pass (here)
            baseline = _Accumulator()
            passes.score([], states, scoring, baseline, worker.tick)
            baseline_rows = _rows("none", baseline, chosen, seed, {}, experiment)
        ran_on = {} if local else {"executor": pool.describe()}
    header = provenance(experiment, model, data, seed=seed, metrics=list(chosen), batch_size=batch_size,
                        interventions={u.key: u.intervention.spec() for u in units},
                        logit_pair=list(pair) if pair else None, prepared=prepared_info or None,
                        resumed_units=len(units) - len(todo), wall_seconds=round(time.perf_counter() - started, 3),
                        **ran_on, **({"attention_block": attention_block} if attention_block is not None else {}))
    if store is not None:
        return store.finish(header, leading_rows=baseline_rows)
    return Results(baseline_rows + rows, header)


def _stacks(group: list[Unit], stack: int) -> Iterator[list[Unit]]:
    """Units that share one forward pass (`stack` at a time); an intervention that changes the sequence
    length (a test-time register) runs alone, since it would change every row of the pass."""
    shared: list[Unit] = []
    for unit in group:
        if unit.intervention.changes_length:
            yield [unit]
            continue
        shared.append(unit)
        if len(shared) == stack:
            yield shared
            shared = []
    if shared:
        yield shared


def _rows(key: str, acc: _Accumulator, chosen: Sequence[str], seed: int, columns: dict, experiment: str) -> list[dict]:
    wanted = set(chosen) | ({"delta_logit_diff"} if "logit_diff" in chosen else set())
    out = [{"experiment": experiment, "intervention": key, **columns, **stats.row(metric, seed=seed)}
           for metric, stats in acc.stats.items() if metric in wanted]
    if "perplexity" in chosen and "loss" in acc.stats:
        out.append({"experiment": experiment, "intervention": key, **columns,
                    **acc.stats["loss"].row("perplexity", seed=seed, transform=math.exp)})
    return out


def evaluate(model: Any, data: Dataset, batch_size: int = 8, seed: int = 0, progress: bool = True,
             attention_block: Any = None) -> Results:
    """Baseline next-token loss and perplexity of a causal LM over every predicted position.

        >>> evaluate(zoo.load("smollm2-135m"), data).value("loss")
        >>> evaluate(model, data_8k, attention_block=256)             # blockwise, 256 query rows per block
    """
    model_info = info(model)
    if model_info.family == "image-classifier":  # the classifier's baseline is its accuracy
        results = run(model, data, [], metrics=("accuracy",), batch_size=batch_size, seed=seed, progress=progress,
                      experiment="eval", attention_block=attention_block)
        return Results([{**r, "model": model_info.name} for r in results], results.provenance)
    if not model_info.causal:
        raise InputError(f"{model_info.name} is an encoder without a trained LM head: next-token loss means "
                         "nothing there; use an embedding metric (`sinkbench run --metric embedding_cosine`)")
    results = run(model, data, [], metrics=("loss", "perplexity"), batch_size=batch_size, seed=seed,
                  progress=progress, experiment="eval", attention_block=attention_block)
    return Results([{**r, "model": model_info.name} for r in results], results.provenance)


# --------------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------------


def sweep_units(model: Any, intervention: Intervention, over: str, layers: Any = None, heads: Any = None) -> list[Unit]:
    """One unit per layer (over="layer") or per (layer, head) (over="head") of an intervention's scope."""
    model_info = info(model)
    layer_ids = sites.parse_layers(layers, model)
    fields = {f.name for f in dataclasses.fields(intervention)}
    if over == "layer":
        if "layers" not in fields:
            raise InputError(f"{intervention.name} is not scoped by layers; set its layer= instead of sweeping")
        return [Unit(f"{intervention.name}@L{layer}", intervention.scoped(layers=(layer,)), {"layer": layer})
                for layer in layer_ids]
    if over == "head":
        if "heads" not in fields:
            raise InputError(f"{intervention.name} has no heads to sweep; sweep over layer")
        head_ids = sites.parse_heads(heads, model)
        return [Unit(f"{intervention.name}@L{layer}H{head}", intervention.scoped(layers=(layer,), heads=(head,)),
                     {"layer": layer, "head": head}) for layer in layer_ids for head in head_ids]
    raise InputError(f"sweep over {over!r}: use layer or head (model {model_info.name})")


def sweep(model: Any, data: Dataset, intervention: Intervention | str, over: str = "head", layers: Any = None,
          heads: Any = None, **run_options: Any) -> Results:
    """Run an intervention on each layer or each (layer, head) separately; rows carry layer/head columns.

        >>> sweep(model, data, "zero-implicit-bias", over="head", out="out/zib-heads.json")
        >>> sweep(model, data, "zero-head", out="out/zh.json", executor={"kind": "ray", "workers": 8})

    Statistics an intervention needs (`mean-*`) are collected once, for the whole scope, and shared (on Ray,
    computed here and sent to the workers once). `run_options`: those of `run`, `executor` included.
    """
    base = as_intervention(intervention)
    base.validate(model)
    units = sweep_units(model, base, over, layers, heads)
    block = attention.parse_block(run_options.get("attention_block"))  # `attention_block=`: its first pass too

    def states() -> dict[str, Any]:  # one first pass for the whole scope, only if some unit still runs
        with attention.policy(model, block) if block is not None else contextlib.nullcontext():
            state = base.prepare(model, data, run_options.get("batch_size", 8), run_options.get("progress", True))
        return {u.key: state for u in units}

    return run(model, data, units=units, states=states, experiment=f"sweep:{base.name}:{over}", **run_options)
