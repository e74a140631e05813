"""A test-time register (Jiang, Dravid, Efros, Gandelsman 2025, "Vision Transformers Don't Need *Trained*
Registers"): give a trained ViT an extra token and move the high-norm activations onto it, without
retraining.

    >>> ttr = get("test-time-register", rule="top:1", layers=4, n_neurons=8)
    >>> experiment.run(model, images, [ttr])                         # accuracy, logit change, KL to baseline
    >>> hooks, spec = experiment.batch_hooks(model, ttr, images)
    >>> probes.patch_norms(model, images, hooks=hooks, hooks_spec=spec)   # do the patch outliers move to [TTR]?

Method (after Jiang et al. §3-4): (1) `prepare` finds the outlier patches: those a high-norm rule
flags in the residual stream after block `layer` (`HighNormRule`: top:K per image, abs:X - their default
threshold is 30 - or ratio:R); (2) it scores every MLP neuron of blocks 0..layer by its mean |activation|
(`mlp.hook_post`) at those positions and keeps the `n_neurons` highest: the register neurons; (3) at
inference one zero-initialised token is appended after the last position (`hook_embed`) and, in every
block holding a register neuron, that neuron's activation at the patch positions is set to zero (`mode`
zero, or to its mean over patches, `mean`) while the extra token receives its maximum over the image's
patches. The classifier still reads [CLS], so outputs keep their shape.

It applies to image models only: appending a token to a causal LM's input would be seen by no other
position. Because it lengthens the sequence it runs alone (the runner gives it its own forward pass) and
cannot be composed with interventions whose masks were built for the original positions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from interventions.protocol import Intervention, register
from workbench.core import sites
from workbench.core.errors import InputError, check_range
from workbench.core.modelinfo import info
from workbench.passes import Hook, PassContext

MODES = ("zero", "mean")


@register("test-time-register", "append an extra token and move the register neurons' activations onto it "
                                "(Jiang et al. 2025)")
@dataclasses.dataclass(frozen=True)
class TestTimeRegister(Intervention):
    rule: str = "top:1"
    layers: Any = None  # the one layer whose outliers are moved (default: the high-norm rule's)
    n_neurons: int = 8
    mode: str = "zero"
    changes_length: ClassVar[bool] = True

    def validate(self, model: Any) -> None:
        from workbench.vision.images import HighNormRule

        super().validate(model)
        model_info = info(model)
        if not model_info.is_image:
            raise InputError(f"{self.name} needs an image model (ViT / DeiT); {model_info.name} is a text model, where "
                             "an appended last token would be seen by no other position")
        missing = [h for h in (sites.EMBED, sites.mlp_post(0)) if h not in model.hook_dict]
        if missing:
            raise InputError(f"{self.name}: {model_info.name} exposes no {missing[0]} hook")
        if self.mode not in MODES:
            raise InputError(f"{self.name}: mode {self.mode!r}: use one of {', '.join(MODES)}")
        check_range(f"{self.name}: n_neurons", self.n_neurons, 1, 1 << 20)
        if self.layers is not None and len(sites.parse_layers(self.layers, model)) != 1:
            raise InputError(f"{self.name}: layers={self.layers!r}: give exactly one layer (or none: the high-norm "
                             "rule's layer)")
        HighNormRule.parse(self.rule)

    def detect_layer(self, model: Any) -> int:
        from workbench.vision.images import HighNormRule

        if self.layers is not None:
            return sites.parse_layers(self.layers, model)[0]
        return HighNormRule.parse(self.rule).resolve_layer(info(model))

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        """Find the outlier patches and the register neurons (a first, read-only pass over `data`)."""
        from workbench.passes import probe_pass
        from workbench.vision.images import HighNormRule

        model_info = info(model)
        if not hasattr(data, "patch_kinds"):
            raise InputError(f"{self.name} needs an ImageSet (workbench.vision.image_set), not token data")
        rule = HighNormRule.parse(self.rule)
        detect = self.detect_layer(model)
        first, n_patches = model_info.n_prefix, model_info.n_patches
        patch = slice(first, first + n_patches)
        layers = list(range(detect + 1))
        d_mlp = None
        totals: dict[str, Any] = {"outlier": None, "patch": None, "n_outliers": 0, "n_patches": 0}

        def on_mlp(layer: int, act: torch.Tensor, batch: Any) -> None:
            batch.scratch[("mlp", layer)] = act[:, patch].float()  # [b, P, d_mlp]

        def on_resid(layer: int, resid: torch.Tensor, batch: Any) -> None:
            nonlocal d_mlp
            if layer != detect:
                return
            flags = rule.flag(resid[:, patch].float().norm(dim=-1))  # [b, P]
            acts = torch.stack([batch.scratch.pop(("mlp", block)) for block in layers])  # [L, b, P, d_mlp]
            d_mlp = acts.shape[-1]
            outlier_sum = (acts.abs() * flags[None, :, :, None]).sum(dim=(1, 2)).double().cpu()  # [L, d_mlp]
            patch_sum = acts.sum(dim=(1, 2)).double().cpu()
            totals["outlier"] = outlier_sum if totals["outlier"] is None else totals["outlier"] + outlier_sum
            totals["patch"] = patch_sum if totals["patch"] is None else totals["patch"] + patch_sum
            totals["n_outliers"] += int(flags.sum())
            totals["n_patches"] += flags.numel()

        probe_pass(model, data, [("mlp.hook_post", on_mlp), (sites.RESID_POST, on_resid)], layers,
                   batch_size=batch_size, progress=progress, desc="find register neurons")
        if totals["n_outliers"] == 0:
            raise InputError(f"{self.name}: no patch of these images passes the high-norm rule {rule.label} after block "
                             f"{detect}; use top:K or a lower threshold (see `sinkbench probe patch-norms`)")
        score = totals["outlier"] / totals["n_outliers"]  # [L, d_mlp] mean |activation| at the outliers
        k = min(self.n_neurons, score.numel())
        top = torch.topk(score.flatten(), k)
        neurons: dict[int, list[int]] = {}
        for flat in top.indices.tolist():
            layer, neuron = divmod(flat, d_mlp)
            neurons.setdefault(layer, []).append(neuron)
        means = totals["patch"] / totals["n_patches"]
        return {"detect_layer": detect, "rule": rule.label, "n_outliers": totals["n_outliers"],
                "outlier_fraction": totals["n_outliers"] / totals["n_patches"],
                "neurons": {layer: sorted(ids) for layer, ids in sorted(neurons.items())},
                "scores": [float(v) for v in top.values],
                "patch_means": {layer: means[layer, sorted(ids)].float() for layer, ids in neurons.items()}}

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        model_info = info(model)
        first, n_patches = model_info.n_prefix, model_info.n_patches
        state = ctx.state

        def append_register(embeddings: torch.Tensor, hook: Any) -> torch.Tensor:
            return torch.cat([embeddings, torch.zeros_like(embeddings[:, :1])], dim=1)  # [b, T + 1, d]

        out: list[Hook] = [(sites.EMBED, append_register)]
        for layer, neurons in state["neurons"].items():
            def move(act: torch.Tensor, hook: Any, neurons: list[int] = neurons, layer: int = layer) -> torch.Tensor:
                new = act.clone()
                patches = new[:, first:first + n_patches, neurons]  # [b, P, k]
                peak = patches.max(dim=1).values  # [b, k]: each image's largest activation of each neuron
                if self.mode == "zero":
                    new[:, first:first + n_patches, neurons] = 0.0
                else:
                    new[:, first:first + n_patches, neurons] = state["patch_means"][layer].to(new.device, new.dtype)
                new[:, -1, neurons] = peak  # the test-time register takes the outlier activation over
                return new
            out.append((sites.mlp_post(layer), move))
        return out
