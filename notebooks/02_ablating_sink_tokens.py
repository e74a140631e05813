# %% [markdown]
# # 02 · Ablating sink tokens
#
# **Question.** What happens to the model when attention can no longer go to the sink — masked out,
# scaled down, or evicted by a sliding window — and which layers and heads care?
#
# **Method.** Interventions from the catalogue edit the attention pattern through hooks:
# `mask-sink` sets A[q, 0] = 0 for q ≥ 1 and renormalises each row; `scale-sink` multiplies A[q, 0] by γ
# and renormalises (ZeroTuning); `window-attention` keeps the first `n_sinks` keys plus the last W
# (StreamingLLM's mask). We measure the change of the next-token loss and the KL divergence to the
# baseline, with bootstrap intervals over sequences.

# %%
import workbench as wb
from workbench import data, experiment, plots, zoo

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")

# %%
windows = data.corpus_windows(model, "austen", window=64, n_windows=8)
catalogue = ["mask-sink", "scale-sink:gamma=0.25", "scale-sink:gamma=4",
             "window-attention:window=8,n_sinks=0", "window-attention:window=8,n_sinks=4"]
effects = experiment.run(model, windows, catalogue, progress=False)
fig, table = plots.intervention_effects(effects)
plots.show(fig)
effects.filter(metric="kl").df[["intervention", "value", "ci_low", "ci_high"]]

# %% [markdown]
# Taking attention away from the sink and renormalising changes the loss very little: the mass
# is simply redistributed. Evicting the sink from a short window (n_sinks = 0) hurts much more than a
# window that keeps the first tokens, the StreamingLLM observation in mask form.

# %%
per_layer = experiment.sweep(model, windows.subset(range(4)), "mask-sink", over="layer", progress=False)
fig, _ = plots.sweep_profile(per_layer, metric="kl", label="KL(baseline || masked) per token")
plots.show(fig)

# %% [markdown]
# ## Which heads matter?
#
# A full (layer, head) sweep is 270 forward passes; attribution patching estimates it from one forward
# and one backward pass (gradient × difference). We show the estimate for every head.

# %%
from workbench.experiment.attribution import attribution_sweep

estimate = attribution_sweep(model, windows, "mask-sink", progress=False)
fig, _ = plots.sweep_heatmap(wb.Results([{**r, "metric": "delta_loss"} for r in estimate], estimate.provenance))
plots.show(fig)

# %% [markdown]
# **What it means.** Per head, masking the sink moves the loss by a few hundredths of a nat at most,
# in both directions, and only a handful of heads stand out: most heads can do without the sink if their
# attention is renormalised (the whole-model mask costs more than any single head). The sink matters as a
# place to put attention when a head has nothing to do — see notebook 04 for what it *writes*.
