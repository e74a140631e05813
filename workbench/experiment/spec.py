"""Experiments as data: a TOML spec fully determines a run; `explain` says what it will do first.

    >>> spec = RunSpec.load("docs/specs/implicit-bias.toml")
    >>> print(spec.explain()); results = spec.execute()

```toml
model = "smollm2-135m"                 # zoo name, local directory or cached HF id

[data]                                 # one of corpus (default) / text_file / jsonl / prompts
corpus = "austen"
window = 128
n_windows = 16
prepend_bos = true

[run]
interventions = ["zero-implicit-bias", "mean-implicit-bias", "scale-sink:gamma=0.5,layers=3-10"]
metrics = ["loss", "delta_loss", "kl", "top1_agreement"]      # optional: defaults per model family
batch_size = 8
seed = 0
out = "results/implicit-bias.json"

[[run.intervention]]                   # the same as a table (optional)
name = "scale-sink"
gamma = 0.25

[sweep]                                # optional: one intervention per layer or (layer, head)
intervention = "zero-implicit-bias"
over = "head"
attribution = "ig"                     # also estimate it by attribution patching (true = "atp"; "atp*")
attribution_groups = 27                # ig only: paths shared by the heads (default 9: 10 passes)

[executor]                             # optional: where the passes run (default "local"; docs/SCALE.md)
kind = "ray"                           # or the short form: executor = "ray"
address = "auto"                       # auto | HOST:PORT; none: a local Ray started for the run
workers = 4
cpus_per_worker = 2
gpus_per_worker = 0
```
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError, WorkbenchError, check_range

_TOP = {"model", "device", "data", "run", "sweep", "executor"}
_DATA = {"corpus": str, "document": str, "text_file": str, "jsonl": str, "prompts": str, "window": int,
         "n_windows": int, "prepend_bos": bool, "seed": int, "images": str, "n_images": int, "high_norm": str}
_RUN = {"interventions": list, "intervention": list, "metrics": list, "batch_size": int, "seed": int, "out": str,
        "logit_pair": list, "resume": bool, "rows_per_forward": int,
        "attention_block": (int, str)}  # B, "full" or "auto" (workbench.attention.policy)
# attribution.MODES and attribution_sweep's defaults, kept here so that loading a spec imports no torch
# (tests/unit/test_spec.py holds them equal)
ATTRIBUTION_MODES = ("atp", "atp*", "ig")
IG_GROUPS = 9
GRADDROP_LAYERS = 9
_SWEEP = {"intervention": (str, dict), "over": str, "layers": (str, int, list), "heads": (str, int, list),
          "attribution": (bool, str),  # true (= atp) or a mode: atp, atp*, ig
          "attribution_groups": int}  # ig: heads dealt into this many paths (default 9; 27 ranks closer)


def _image_model_names() -> set[str]:
    from workbench.zoo import TINY, TRAINED

    return set(TRAINED) | {name for name, card in TINY.items() if card.family.startswith("image")}


def needs_statistics(intervention: Any) -> bool:
    """Whether an intervention runs a first, read-only pass over the data (means, patch sources)."""
    from interventions import Compose, Intervention

    if isinstance(intervention, Compose):
        return any(needs_statistics(m) for m in intervention.members)
    return type(intervention).prepare is not Intervention.prepare


def _check(table: dict, allowed: dict, where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise InputError(f"spec {where}: unknown key {key!r}; allowed {', '.join(sorted(allowed))}")
        kind = allowed[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool) and int in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise InputError(f"spec {where}.{key}: expected {names}, got {value!r}")


@dataclasses.dataclass
class RunSpec:
    model: str = "smollm2-135m"
    device: str | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    run: dict[str, Any] = dataclasses.field(default_factory=dict)
    sweep: dict[str, Any] | None = None
    source: str = "<flags>"
    executor: str | dict[str, Any] | None = None  # "local" | "ray" | a table of Ray options (executors.check_options)

    @classmethod
    def load(cls, path: str | Path) -> RunSpec:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"spec file {path} does not exist")
        try:
            blob = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"spec {path}: not a UTF-8 text file (byte {exc.start}); a spec is TOML text") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"spec {path}: not valid TOML ({exc})") from exc
        return cls.from_dict(blob, str(path))

    @classmethod
    def from_dict(cls, blob: dict, source: str = "<dict>") -> RunSpec:
        for key in blob:
            if key not in _TOP:
                raise InputError(f"spec {source}: unknown top-level key {key!r}; allowed {', '.join(sorted(_TOP))}")
        if not isinstance(blob.get("model", ""), str):
            raise InputError(f"spec {source}: model: expected a string, got {blob['model']!r}")
        for name, allowed in (("data", _DATA), ("run", _RUN), ("sweep", _SWEEP)):
            if name in blob and not isinstance(blob[name], dict):
                raise InputError(f"spec {source}: [{name}] must be a table")
            _check(blob.get(name, {}), allowed, f"[{name}]")
        executor = blob.get("executor")
        if executor is not None:
            from workbench.experiment.executors import check_options

            check_options(executor, f"spec {source}: executor")  # the form and ranges now; the cluster at execute
            executor = dict(executor) if isinstance(executor, dict) else executor
        spec = cls(blob.get("model", "smollm2-135m"), blob.get("device"), dict(blob.get("data", {})),
                   dict(blob.get("run", {})), dict(blob["sweep"]) if "sweep" in blob else None, source, executor)
        spec.interventions()  # parse now: a malformed entry points at its key before anything loads
        spec._check_values()
        if spec.sweep is not None:
            if "intervention" not in spec.sweep:
                raise InputError(f"spec {source}: [sweep] needs an intervention")
            spec.sweep_intervention()
        return spec

    def _check_values(self) -> None:
        """Values that are wrong whatever the model: what `explain` must refuse as well as `execute`."""
        from workbench.core import sites
        from workbench.core.errors import check_range
        from workbench.core.results import FORMATS
        from workbench.experiment.scoring import KNOWN

        where = f"spec {self.source}"
        limits = {("data", "window"): 2, ("data", "n_windows"): 0, ("data", "n_images"): 1, ("data", "seed"): 0,
                  ("run", "batch_size"): 1, ("run", "seed"): 0, ("run", "rows_per_forward"): 1}
        for (table, key), low in limits.items():
            blob = self.data if table == "data" else self.run
            if key in blob:
                try:
                    check_range(f"[{table}].{key}", blob[key], low, 1 << 30)
                except InputError as exc:
                    raise InputError(f"{where}: {exc}") from None
        if "attention_block" in self.run:
            from workbench.attention import parse_block

            try:
                parse_block(self.run["attention_block"], "[run].attention_block")
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
        unknown = [m for m in self.run.get("metrics", []) if not isinstance(m, str) or m not in KNOWN]
        if unknown:
            raise InputError(f"{where}: [run].metrics: unknown metric {unknown[0]!r}; use {', '.join(sorted(KNOWN))}")
        out = self.run.get("out")
        if out is not None and Path(out).suffix not in FORMATS:
            raise InputError(f"{where}: [run].out = {out!r}: unknown result format {Path(out).suffix!r}; use "
                             f"{', '.join(FORMATS)}")
        if self.sweep is not None:
            over = self.sweep.get("over", "head")
            if over not in ("layer", "head"):
                raise InputError(f"{where}: [sweep].over = {over!r}: use 'layer' or 'head'")
            self._check_attribution(where)
            for key, what in (("layers", "layer"), ("heads", "head")):
                if key in self.sweep:  # the form now; the range once the model is loaded
                    try:
                        sites._parse_index_spec(self.sweep[key], 1 << 20, what, self.model)
                    except InputError as exc:
                        raise InputError(f"{where}: [sweep].{key}: {exc}") from None

    def attribution_mode(self) -> str | None:
        """The sweep's attribution mode (None: no estimate; `attribution = true` is atp)."""
        chosen = (self.sweep or {}).get("attribution")
        return None if chosen in (None, False) else "atp" if chosen is True else chosen

    def attribution_options(self) -> dict:
        groups = (self.sweep or {}).get("attribution_groups")
        return {} if groups is None else {"groups": groups}

    def _check_attribution(self, where: str) -> None:
        mode = self.attribution_mode()
        if mode is not None and mode not in ATTRIBUTION_MODES:
            raise InputError(f"{where}: [sweep].attribution = {mode!r}: allowed true (atp), "
                             f"{', '.join(repr(m) for m in ATTRIBUTION_MODES)}")
        if "attribution_groups" in self.sweep:
            if mode != "ig":
                raise InputError(f"{where}: [sweep].attribution_groups is an option of attribution = 'ig' "
                                 f"(the attribution here is {mode!r})")
            try:
                check_range("[sweep].attribution_groups", self.sweep["attribution_groups"], 1, 1 << 20)
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None

    def _attribution_cost(self) -> str:
        mode = self.attribution_mode()
        if mode == "ig":
            groups = self.sweep.get("attribution_groups", IG_GROUPS)
            return f"ig, {groups} paths x 1 step + the clean pass: up to {groups + 1} forward+backward passes"
        if mode == "atp*":
            return (f"atp* (GradDrop over {GRADDROP_LAYERS} layers): 1 forward + up to {GRADDROP_LAYERS + 1} "
                    "backward passes")
        return "atp: 1 forward + 1 backward pass"

    def interventions(self) -> list:
        from interventions import from_spec, parse

        out = []
        for i, item in enumerate(self.run.get("interventions", [])):
            if not isinstance(item, str):
                raise InputError(f"spec {self.source}: [run].interventions[{i}]: expected a string like "
                                 f"'scale-sink:gamma=0.5', got {item!r}")
            try:
                out.append(parse(item))
            except InputError as exc:
                raise InputError(f"spec {self.source}: [run].interventions[{i}]: {exc}") from exc
        for i, table in enumerate(self.run.get("intervention", [])):
            try:
                out.append(from_spec(table))
            except (InputError, TypeError) as exc:
                raise InputError(f"spec {self.source}: [[run.intervention]] #{i + 1}: {exc}") from exc
        return out

    def sweep_intervention(self):
        from interventions import from_spec

        item = self.sweep["intervention"]
        try:
            return from_spec(item)
        except (InputError, TypeError) as exc:
            raise InputError(f"spec {self.source}: [sweep].intervention: {exc}") from exc

    # -- running --------------------------------------------------------------------------------
    def load_data(self, model: Any):
        from workbench import zoo
        from workbench.core import corpora, data

        d = {"corpus": corpora.DEFAULT_CORPUS, "window": 128, "n_windows": 8, "prepend_bos": None, "seed": 0, **self.data}
        if zoo.info(model).is_image:  # image models: generated shapes or an image file (workbench.vision)
            from workbench.vision import image_set

            images = image_set(model, d.get("images", "shapes"), n=d.get("n_images", 64), seed=d["seed"])
            if d.get("high_norm") is None:
                return images
            from workbench.probes.high_norm import mark_high_norm

            return mark_high_norm(model, images, d["high_norm"])
        if "images" in d or "high_norm" in d:
            raise InputError(f"spec {self.source}: [data].images / high_norm are for image models; {self.model} is not one")
        if "text_file" in d:
            return data.from_file(model, d["text_file"], d["window"], d["prepend_bos"], max_windows=d["n_windows"] or None)
        if "jsonl" in d:
            return data.from_jsonl(model, d["jsonl"], d["window"], d["prepend_bos"], max_windows=d["n_windows"] or None)
        if d.get("prompts") and d["prompts"] != "natural":
            return data.control_prompts(model, d["prompts"], d["window"], d["n_windows"], d["seed"], d["prepend_bos"])
        return data.corpus_windows(model, d["corpus"], d["window"], d["n_windows"], d["prepend_bos"], d.get("document"))

    def explain(self) -> str:
        """What `execute` will do, without loading anything heavy."""
        lines = [f"spec: {self.source}", f"model: {self.model}" + (f" on {self.device}" if self.device else "")]
        d = {"corpus": "austen", "window": 128, "n_windows": 8, "prepend_bos": None, **self.data}
        source = d.get("text_file") or d.get("jsonl") or (f"prompts:{d['prompts']}" if d.get("prompts") else
                                                          f"corpus:{d['corpus']}")
        if "images" in d or self.model in _image_model_names():
            marked = f", high-norm patches flagged by {d['high_norm']}" if d.get("high_norm") else ""
            lines.append(f"data (image model): {d.get('images', 'shapes')}, {d.get('n_images', 64)} images{marked}")
        else:
            lines.append(f"data: {source}, windows of T={d['window']} tokens, {d['n_windows'] or 'all'} sequences, "
                         "BOS " + {True: "prepended", False: "not prepended"}.get(d["prepend_bos"],
                                                                                  "as the model's policy says"))
        units = self.interventions()
        batch = self.run.get("batch_size", 8)
        lines.append(f"metrics: {', '.join(self.run['metrics']) if 'metrics' in self.run else 'defaults of the model family'}"
                     f"; bootstrap 95% intervals over sequences; seed {self.run.get('seed', 0)}")
        if self.sweep:
            base = self.sweep_intervention()
            over = self.sweep.get("over", "head")
            try:
                from workbench.zoo import card

                shape = card(self.model)
                count = shape.n_layers * (shape.n_heads if over == "head" else 1)
                lines.append(f"sweep size: up to {count} units ({shape.n_layers} layers"
                             f"{f' x {shape.n_heads} heads' if over == 'head' else ''}), each one forward pass per batch")
            except WorkbenchError:  # a local directory or HF id: its shape is unknown until loaded
                pass
            lines.append(f"sweep: {base} over each {over}"
                         f"{' (layers ' + str(self.sweep['layers']) + ')' if 'layers' in self.sweep else ''}"
                         f"{'; plus an attribution-patching estimate (' + self._attribution_cost() + ')' if self.attribution_mode() else ''}")
        lines.append("passes: 1 baseline pass" + (f" + {len(units)} intervention pass(es): " +
                     "; ".join(str(u) for u in units) if units else "") + f", batch size {batch}")
        needs_first_pass = [str(u) for u in units if needs_statistics(u)]
        if needs_first_pass:
            lines.append("first passes (statistics): " + "; ".join(needs_first_pass))
        if self.executor is not None:
            from workbench.experiment.executors import check_options, describe

            lines.append(describe(self.executor))
            if self.sweep and self.sweep.get("attribution") and check_options(self.executor)["kind"] != "local":
                lines.append("attribution estimate: in this process (it needs gradients of one model)")
        out = self.run.get("out")
        lines.append(f"output: {out} (journaled: a rerun resumes an unfinished run and reuses a finished file "
                     "made by the same run; --force recomputes)" if out else
                     "output: printed only (set [run].out to save)")
        return "\n".join(lines)

    def execute(self, progress: bool = True, force: bool = False, executor: Any = None):
        """Run the spec; a finished `out` file of the same run is reused (with a message) unless `force`.

        `executor` (a name, options or an Executor) overrides the spec's `executor`; the intervention passes
        run there (the attribution estimate of a sweep runs in this process)."""
        from workbench import zoo
        from workbench.experiment import executors

        model = zoo.load(self.model, device=self.device)
        dataset = self.load_data(model)
        with executors.using(executor if executor is not None else self.executor) as pool:
            return self._execute(model, dataset, progress, force, pool)

    def _execute(self, model: Any, dataset: Any, progress: bool, force: bool, pool: Any):
        from workbench.experiment.attribution import attribution_sweep, spearman
        from workbench.experiment.runner import run, sweep

        options = {"metrics": self.run.get("metrics"), "batch_size": self.run.get("batch_size", 8),
                   "seed": self.run.get("seed", 0), "logit_pair": self.run.get("logit_pair"),
                   "resume": self.run.get("resume", True), "progress": progress,
                   "rows_per_forward": self.run.get("rows_per_forward", 16), "force": force, "executor": pool,
                   "attention_block": self.run.get("attention_block")}
        out = self.run.get("out")
        if self.sweep:
            base = self.sweep_intervention()
            results = sweep(model, dataset, base, over=self.sweep.get("over", "head"), layers=self.sweep.get("layers"),
                            heads=self.sweep.get("heads"), out=out, **options)
            reused = results.provenance.get("reused") and \
                results.filter(metric="attribution_delta_loss", empty_ok=True).rows
            if self.attribution_mode() and not reused:
                estimate = attribution_sweep(model, dataset, base, options["batch_size"], progress,
                                             mode=self.attribution_mode(), **self.attribution_options())
                rho = spearman(estimate, results) if self.sweep.get("over", "head") == "head" else None
                results = results + estimate
                results.provenance["attribution_spearman"] = rho
                if out:
                    results.save(out)
            return results
        return run(model, dataset, self.interventions(), out=out, **options)
