# %% [markdown]
# # 04 · The implicit attention bias
#
# **Question.** The survey's *implicit attention bias* account (§4.3; Sun et al. 2024 §4.2) says the sink
# term A[q, 0]·v₀W_O is a near-constant bias: zeroing it hurts, replacing it by a constant does not. Is that
# true for SmolLM2?
#
# **Method.** (1) Decompose every head's output and measure how constant the sink term is across queries
# and inputs (a coefficient of variation, against the term of token 1 as the null). (2) The causal test:
# `zero-implicit-bias` removes the term, `mean-implicit-bias` replaces it by mean(A[q,0]) · mean(v₀) per
# head (collected in a first pass over all evaluated sequences).

# %%
from workbench import data, experiment, plots, probes, zoo

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")

# %%
windows = data.corpus_windows(model, "austen", window=64, n_windows=8)
bias = probes.implicit_bias(model, windows, progress=False)
fig, _ = plots.implicit_bias_constancy(bias)
plots.show(fig)

# %% [markdown]
# The sink term varies an order of magnitude less than the term of an ordinary token, and in the
# deep layers it is a large part of what a head writes. BOS's value vector is identical across inputs
# (the maximum relative deviation is printed below).

# %%
print("max relative deviation of v_0 across inputs:",
      bias.filter(metric="sink_value_max_deviation_relative").df.value.max())
test = experiment.run(model, windows, ["zero-implicit-bias", "mean-implicit-bias", "mask-sink"], progress=False)
fig, _ = plots.intervention_effects(test)
plots.show(fig)

# %%
small = data.corpus_windows(model, "austen", window=64, n_windows=4)
zero = experiment.sweep(model, small, "zero-implicit-bias", over="layer", progress=False)
mean = experiment.sweep(model, small, "mean-implicit-bias", over="layer", progress=False)
fig, _ = plots.sweep_profile(zero + mean)
plots.show(fig)

# %% [markdown]
# **What it means.** Removing the sink term costs SmolLM2 between a third and half a nat per token; a
# single constant per head recovers about two thirds of that, but not all — the term is nearly, not perfectly, constant
# (its coefficient of variation is far from zero in some layers). The per-layer sweep shows where the
# constant is a good replacement and where it is not.
