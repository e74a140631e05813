# %% [markdown]
# # 08 · Mitigation lab: train small transformers and watch sinks emerge — or not
#
# **Question.** Which changes to attention stop a sink from forming? Guo et al. (2024) showed that a
# one-layer transformer trained on *Bigram-Backcopy* grows a sink within a few hundred steps: after a
# trigger character the model must copy the character before the trigger (the head is *active*); everywhere
# else the next character follows bigram statistics that the MLP knows, and the head has nothing to do. A
# softmax head cannot output nothing, so it parks its attention on `<s>` and shrinks `<s>`'s value — a
# *dormant* head. The mitigations of the literature give the head another way to do nothing: softmax+1
# (Miller 2023), sigmoid without normaliser and a learnable key bias with v = 0 (Gu et al. 2025), ReLU
# attention (Guo et al. 2024), an output gate (Qiu et al. 2025), a learnable sink logit (gpt-oss).
#
# **Method.** `workbench.toy` trains the seven variants from the same seed (same batches, same shared
# initial weights) and logs the sink while they learn. Here the reduced `figure` preset (d_model 64,
# T = 32, 400 steps, about ten seconds a variant); `sinkbench train` runs the full one (d_model 256, T = 64,
# 1,000 steps, about three minutes a variant) — its numbers are in the mitigation-lab section of the README.

# %%
import tempfile
from pathlib import Path

import torch

from workbench import experiment, plots, probes, toy, zoo
from workbench.toy.tasks import load_task

torch.set_num_threads(1)  # toys this small gain nothing from more threads, and a busy machine punishes them

RUNS = Path(tempfile.mkdtemp(prefix="toy-runs-"))
runs = {}
for variant in toy.VARIANTS:
    runs[variant] = RUNS / variant
    toy.train(runs[variant], *toy.preset("figure", attention=variant, seed=0), progress=False, log=lambda line: None)
curves = toy.emergence_results(runs)
fig, _ = plots.emergence_curves(curves)
plots.show(fig)

# %% [markdown]
# `Attn_<s>` is the weight that multiplies `v_<s>`, averaged over the positions where the head has
# nothing to do (queries whose token is not a trigger). The table gives each variant's last logged values,
# with the weight its extra zero-value slot took (`sink_slot`) where it has one, and the mean gate value for
# the gated model.

# %%
import pandas as pd

table = pd.DataFrame({variant: toy.summarize(toy.read_curves(run)) for variant, run in runs.items()}).T
slot = curves.df[(curves.df.metric.isin(["sink_slot", "gate"]))].sort_values("step").groupby(["variant", "metric"]).value.last()
table = table.join(slot.unstack())
table[["first_step_bos_attention_ge_0.5", "final_bos_attention", "final_bos_share", "sink_slot", "gate",
       "final_backcopy_risk", "final_bigram_risk", "final_v_bos_norm", "final_v_other_norm"]].round(3)

# %% [markdown]
# ## What the sink does: a causal test on the trained toys
#
# A trained toy loads back through the zoo like any model, so the catalogue's interventions run on it
# unchanged. If the softmax head's sink is how it does nothing, then taking its attention off `<s>`
# (`mask-sink`, the weight spread over the other keys) should hurt — the head starts writing the other
# tokens' values — while removing `<s>`'s own contribution (`zero-sink-value`) should barely matter,
# because its value has shrunk. Variants that do nothing another way should care less about the mask.

# %%
effects = []
for variant in ("softmax", "softmax1", "relu", "gated", "sink-logit"):
    model = zoo.load(f"toy:{runs[variant]}")
    windows = load_task(runs[variant]).dataset(128, seed=1)
    result = experiment.run(model, windows, ["mask-sink", "zero-sink-value", "mean-implicit-bias"], progress=False)
    frame = result.filter(metric="delta_loss").df[["intervention", "value", "ci_low", "ci_high"]]
    effects.append(frame.assign(variant=variant))
    if variant == "softmax":
        fig, _ = plots.intervention_effects(result)
        plots.show(fig)
pd.concat(effects).pivot(index="variant", columns="intervention", values="value").round(4)

# %% [markdown]
# The probes apply too: `norms` shows the drained value — `<s>` takes most of the attention, but
# its value vector is several times shorter than the other tokens'.

# %%
softmax_toy = zoo.load(f"toy:{runs['softmax']}")
windows = load_task(runs["softmax"]).dataset(128, seed=1)
norms = probes.norms(softmax_toy, windows, progress=False)
norms.df[norms.df.metric.isin(["attention_share_sink", "contribution_share_sink", "value_norm_sink",
                               "value_norm_other"])][["metric", "layer", "head", "value"]].round(3)

# %% [markdown]
# **What it means.** On this seed:
#
# - **softmax** grows the sink as Guo et al. describe — `Attn_<s>` passes 0.5 after about a hundred steps
#   and ends near 1 — and drains `v_<s>` to a fraction of the other values' norm. Masking the sink costs
#   loss, zeroing `<s>`'s value costs nothing: the sink is the head's way of doing nothing.
# - **softmax+1, sink-logit and kv-bias** give the head a zero-value slot, yet it barely uses it (a few
#   per cent of the weight): `<s>` still becomes the sink, with a drained value. At this size and length
#   the first token is as good a place to park as the slot, and here the optimiser finds it first. A
#   surprise worth reporting: the slot removes the *need* for a sink, not the sink. It is a race — at full
#   size with seed 1 the slot wins and no `<s>` sink forms (the README's two-seed table).
# - **sigmoid** first puts weight on `<s>` (every weight starts near sigmoid(0) = 0.5) and then turns the
#   whole row down: its raw weight on `<s>` ends small while the share of what is left stays high.
# - **ReLU attention** never forms a sink: the head does nothing by giving every key zero weight.
# - **gated** keeps a partial sink with an undrained `v_<s>`; its gate (mean about 0.2 at bigram positions)
#   switches the head off instead, so here zeroing `<s>`'s value hurts more than masking it.
#
# The full-size runs (`sinkbench train`, README) make the same comparison at 1,000 steps.
