# %% [markdown]
# # 09 · Compose your own intervention
#
# **Question.** Can a new hypothesis be tested in a few lines? Suppose the sink works by *concentrating*
# attention: sharpen every row (raise A to a power, renormalise) and see whether sharpening hurts more
# where sinks are strong.
#
# **Method.** Subclass one of the catalogue's mechanisms (`AttentionEdit`: change the post-softmax pattern
# of the heads in scope), register it, then use it like any catalogue entry: by name in the runner, composed
# with `+`, swept over layers, plotted with the shared figure layer.

# %%
from workbench import data, experiment, plots, probes, zoo

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")

# %%
from interventions import AttentionEdit, register


@register("sharpen-attention")
class SharpenAttention(AttentionEdit):
    """Raise each attention row to a power and renormalise (power > 1 sharpens, < 1 flattens)."""

    power: float = 2.0

    def edit(self, pattern, ctx, layer, scores=None):
        sharpened = pattern ** self.power
        return sharpened / sharpened.sum(-1, keepdim=True), None


# %%
windows = data.corpus_windows(model, "austen", window=64, n_windows=4)
results = experiment.run(model, windows, ["sharpen-attention:power=2", "sharpen-attention:power=0.5",
                                          "sharpen-attention:power=2 + mask-sink"], progress=False)
fig, _ = plots.intervention_effects(results)
plots.show(fig)

# %%
sweep = experiment.sweep(model, windows, "sharpen-attention:power=2", over="layer", progress=False)
sinks = probes.sinks(model, windows, progress=False)
fig, _ = plots.sweep_profile(sweep)
plots.show(fig)
strength = sinks.filter(metric="first_token_attention").df.groupby("layer").value.mean()
effect = sweep.filter(metric="delta_loss").df.set_index("layer").value
print("correlation between a layer's sink strength and the cost of sharpening it:",
      round(float(strength.corr(effect)), 3))

# %% [markdown]
# **What it means.** A dozen lines defined a new intervention; it ran through the same runner,
# composition, sweep and figure code as the catalogue, with bootstrap intervals and provenance (its
# parameters are in `results.provenance["interventions"]`, rebuildable with `interventions.from_spec`).
