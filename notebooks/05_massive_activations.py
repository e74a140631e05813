# %% [markdown]
# # 05 · Massive activations
#
# **Question.** Sun et al. (2024) find a few residual-stream entries thousands of times larger than the
# median, at fixed dimensions of the first token and the first delimiter, acting as fixed biases: setting
# them to zero destroys LLaMA2-7B (perplexity 5.47 → ∞), setting them to their mean changes nothing. Does
# SmolLM2 have them, and do they behave the same?
#
# **Method.** The `massive-activations` probe tracks the top-k |activation| per layer with its position,
# token and dimension; the `massive-activations` intervention finds the massive dimensions at BOS in a
# first pass and sets them to zero or to their mean.

# %%
from workbench import data, experiment, plots, probes, zoo

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")

# %%
windows = data.corpus_windows(model, "austen", window=128, n_windows=4)
massive = probes.massive_activations(model, windows, progress=False)
print(probes.PROBES["massive-activations"].summarize(massive))
fig, _ = plots.massive_layerwise(massive)
plots.show(fig)

# %%
from workbench.probes.activations import layer_snapshot

fig, _ = plots.massive_3d(layer_snapshot(model, "Summer is warm. Winter is cold."))
plots.show(fig)

# %%
test = experiment.run(model, windows, ["massive-activations:mode=zero", "massive-activations:mode=mean"],
                      progress=False)
print(test.provenance["prepared"])
fig, _ = plots.intervention_effects(test)
plots.show(fig)

# %% [markdown]
# **What it means.** SmolLM2 grows massive activations too: a spike of about a thousand on the
# first space/delimiter token from layer 2, and at BOS two dimensions reaching about 25,000 from layer 11 on
# (|a| / median > 10,000). Zeroing the BOS ones at the layer where they appear makes the loss explode by
# about 12 nats; replacing them by their mean changes nothing — they are fixed but important biases,
# exactly Sun et al.'s Table 3.
