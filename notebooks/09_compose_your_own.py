# %% [markdown]
# # 09 · Compose your own intervention
#
# **Question.** Can a new hypothesis be tested in a few lines? Suppose the sink works by *concentrating*
# attention: sharpen every row (raise A to a power, renormalise) and see whether sharpening hurts more
# where sinks are strong.
#
# **Method.** Subclass one of the catalogue's mechanisms (`AttentionEdit`: change the post-softmax pattern
# of the heads in scope), register it, then use it like any catalogue entry: by name in the runner, composed
# with `+`, swept over layers, plotted with the shared figure layer. The extension contract (what `edit`
# receives: `pattern` [b, h, q, k], `ctx.sink` [b, k] the sink keys, `ctx.queries` [b, q] the queries in
# scope; `needs_scores`; what it must return) is the docstring of `AttentionEdit` in
# `interventions/mechanisms.py` (`help(interventions.AttentionEdit)`); the helpers used below are public.

# %%
import torch

from workbench import data, experiment, plots, probes, zoo

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")

# %%
from interventions import AttentionEdit, in_scope_rows, register, renormalise, sink_columns


@register("sharpen-attention")
class SharpenAttention(AttentionEdit):
    """Raise each attention row to a power and renormalise (power > 1 sharpens, < 1 flattens);
    `spare_sink` leaves the sink keys out of the power, so only the other keys compete."""

    power: float = 2.0
    spare_sink: bool = False

    def edit(self, pattern, ctx, layer, scores=None):
        sharpened = pattern ** self.power
        if self.spare_sink:
            sharpened = torch.where(sink_columns(ctx), pattern, sharpened)
        return renormalise(pattern, sharpened, in_scope_rows(ctx)), None  # rows out of scope stay as they were


# %%
windows = data.corpus_windows(model, "austen", window=64, n_windows=4)
results = experiment.run(model, windows, ["sharpen-attention:power=2", "sharpen-attention:power=2,spare_sink=true",
                                          "sharpen-attention:power=0.5", "sharpen-attention:power=2 + mask-sink"],
                         progress=False)
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
# **A sink per sequence.** Is the first full stop of each window a second sink? `first:tok:.` is one key
# per sequence (its first '.'), so one batched probe call measures it on every window; windows without a
# '.' are left out (`skip_missing`) and counted in the provenance.

# %%
stop = probes.sinks(model, windows, sink="first:tok:.", skip_missing=True, progress=False)
to_stop = stop.filter(metric="sink_attention").df.groupby("layer").value.mean()
print(f"{stop.provenance['sequences_with_sink']} of {len(windows)} windows hold a '.'; mean attention over "
      f"layers: first token {strength.mean():.3f}, first '.' {to_stop.mean():.3f}; layers where the '.' takes "
      f"more: {list(to_stop.index[to_stop > strength])}")

# %% [markdown]
# **What it means.** A dozen lines defined a new intervention; it ran through the same runner,
# composition, sweep and figure code as the catalogue, with bootstrap intervals and provenance (its
# parameters are in `results.provenance["interventions"]`, rebuildable with `interventions.from_spec`).
# A per-sequence sink (`first:tok:.`, a [batch, T] mask, or a function of the tokens) is accepted
# wherever a sink is, in probes and interventions alike.
