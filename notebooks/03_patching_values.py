# %% [markdown]
# # 03 · Patching value vectors
#
# **Question.** The sink's value vector is what a head writes when it "does nothing". What happens when we
# swap value vectors between inputs, and how does grouped-query attention (GQA) complicate this?
#
# **Method.** `patch-values` replaces the value vectors at chosen key positions with those of another input
# (here: the next sequence of the batch, `source=roll:1`). SmolLM2 has 9 query heads but only 3 key/value
# heads, so one value head serves three query heads. TransformerLens 4 has no per-query-head value hook:
# the edit happens on the shared value head, and the query heads outside the intervention's scope are
# restored exactly at `hook_z`.

# %%
from workbench import data, experiment, plots, zoo

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")

# %%
group = info.group_size
for kv in range(info.n_kv_heads):
    print(f"value head {kv} serves query heads {[h for h in range(info.n_heads) if h // group == kv]}")

# %%
import torch

windows = data.corpus_windows(model, "austen", window=32, n_windows=4)
tokens = windows.tensor()
seen = {}
grab = [("blocks.12.attn.hook_z", lambda z, hook: seen.setdefault(len(seen), z.clone()))]
patch = "patch-values:source=roll:1,positions=8-15,heads=4,layers=12"
with torch.no_grad(), model.hooks(fwd_hooks=grab):
    model(tokens)
with torch.no_grad(), experiment.hooked(model, patch, tokens, data=windows), model.hooks(fwd_hooks=grab):
    model(tokens)
change = (seen[1] - seen[0]).abs().amax(dim=(0, 1, 3))
for head, value in enumerate(change.tolist()):
    print(f"head {head}: max |change of z| = {value:.2e}")

# %% [markdown]
# Only query head 4 changes; heads 3 and 5 read the same value head but are restored (their
# change is at float precision). Now the effect on the model, layer by layer: patching the values of
# positions 8–15 from another text.

# %%
sweep = experiment.sweep(model, windows, "patch-values:source=roll:1,positions=8-15", over="layer",
                         progress=False)
fig, _ = plots.sweep_profile(sweep, metric="kl", label="KL to the baseline per token")
plots.show(fig)

# %%
sink_patch = experiment.run(model, windows, ["patch-values:source=roll:1,positions=0",
                                             "patch-values:source=roll:1,positions=1"], progress=False)
sink_patch.filter(metric="kl").df[["intervention", "value"]]

# %% [markdown]
# **What it means.** Patching the sink's values (position 0) from another input changes nothing
# at all: position 0 only ever sees BOS in a causal model, so its value vector is the same for every input.
# Patching position 1 — a real word — does change the predictions. The sink's value is input-independent,
# which is the premise of the implicit-bias account (notebook 04).
