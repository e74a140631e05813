# %% [markdown]
# # 12 · Sinks in Mixture-of-Experts models: routing, super experts, and pruning them
#
# **Question.** In a Mixture-of-Experts (MoE) model a router sends each token to a few of many experts. Does the
# attention sink get its own experts, and do a few of them write the massive activations the sink carries? Su et
# al. (2025, "Super Experts") report exactly that for DeepSeek, Qwen3 and Mixtral models: pruning 3 of 6,144
# experts in Qwen3-30B-A3B collapses the attention sinks, while pruning hundreds of random experts barely matters.
#
# **Method.** No MoE weights are reachable offline, so we train one here: `moe-toy-bb`, a 2-layer transformer
# whose MLPs are 8 ReLU experts (top-2 routing, load-balancing loss 0.01), trained for 800 steps on
# Bigram-Backcopy, the task where a softmax head learns to park its attention on `<s>` (notebook 08).
# `sinkbench models fetch moe-toy-bb` trains it once, deterministically. The probes and interventions used here run
# unchanged on the tiny random OLMoE / Mixtral / Qwen2-MoE of the zoo (the real TransformerLens adapters) and on a
# local MoE model directory (last cell).

# %%
import torch

from workbench import experiment, plots, probes, zoo
from workbench.core.data import from_text
from workbench.core.results import Results
from workbench.gallery.recipes_moe import prune_test
from workbench.plots.moe import super_expert_pruning
from workbench.toy.tasks import load_task
from workbench.zoo.manifest import model_dir

torch.set_num_threads(1)  # toys this small gain nothing from more threads, and a busy machine punishes them

zoo.fetch("moe-toy-bb", log=print)  # trained at setup (`sinkbench models fetch --all`); instant when cached
model = zoo.load("moe-toy-bb")
data = load_task(model_dir("moe-toy-bb")).dataset(64, seed=0)
print(model)

# %% [markdown]
# ## Where the router sends the sink
#
# `routing` reads the router's gates (`blocks.{l}.mlp.hook_expert_weights`) and choices
# (`hook_expert_indices`): per layer, the routing entropy of `<s>` vs the other tokens (at most ln 8 = 2.08 nats),
# the expert `<s>` is sent to most, and how many of the other tokens go there too.

# %%
routing = probes.routing(model, data, progress=False)
print(probes.PROBES["routing"].summarize(routing))

# %% [markdown]
# ## Which experts write the sink's massive activations
#
# `super-experts` computes every expert's output at `<s>` from the MoE block's input and the model's own expert
# weights, and ranks the experts by |gate x output| on the dimensions where `<s>`'s residual stream is largest
# (Sun et al. 2024's massive activations sit at fixed dimensions of the sink).

# %%
ranked = probes.super_experts(model, data, progress=False)
print(probes.PROBES["super-experts"].summarize(ranked))
massive = probes.massive_activations(model, data, rule="ratio", ratio_threshold=20, progress=False)
print(probes.PROBES["massive-activations"].summarize(massive))

# %% [markdown]
# ## The causal test: prune the super expert vs random experts
#
# `prune-expert` drops an expert from the routing: each token that was sent to it gets the next-best expert instead,
# with its gates rescaled to their old total (on Mixtral this is exactly the model without that expert). We prune
# the top super expert, and then 10 random draws of one other (layer, expert) pair, and measure the attention to
# `<s>`, `<s>`'s activation on the massive dims, and the loss.

# %%
tested = prune_test(model, data, n_super=1, draws=10, seed=0)
figure_results = Results(tested.rows + [{**r, "condition": "baseline"} for r in ranked.rows], tested.provenance)
fig, frame = super_expert_pruning(figure_results)
plots.show(fig)
summary = tested.df[tested.df.condition != "random_draw"]
summary.pivot_table(index=["metric", "layer"], columns="condition", values="value", dropna=False).dropna(how="all").round(3)

# %% [markdown]
# Pruning both experts that carry `<s>`'s massive dims (one per layer) vs two random ones:

# %%
both = prune_test(model, data, n_super=2, draws=10, seed=0)
print("pruned:", both.provenance["super_experts"])
both.df[both.df.condition != "random_draw"].pivot_table(
    index=["metric", "layer"], columns="condition", values="value", dropna=False).dropna(how="all").round(3)

# %% [markdown]
# ## Sending the sink elsewhere
#
# `reroute-sink` leaves every token but `<s>` alone and sends `<s>` to the next-best experts instead of the ones
# the router chose. Next to it, the super expert pruned in both modes (`renorm`: its tokens re-routed; `zero`: its
# output dropped) and a random expert: the loss and the KL divergence from the unedited model.

# %%
effects = experiment.run(model, data, ["reroute-sink:layers=0", "reroute-sink:layers=1",
                                       "prune-expert:layers=0,experts=1", "prune-expert:layers=0,experts=1,mode=zero",
                                       "prune-expert:layers=0,experts=2"], metrics=("loss", "kl"), progress=False)
effects.df.pivot_table(index="intervention", columns="metric", values="value").round(4)

# %% [markdown]
# **What it means.** In this toy one expert per layer takes `<s>`: its router is decisive at the sink and that
# expert writes essentially all of the routed output on `<s>`'s largest dimensions. Pruning the layer-0 one removes
# most of `<s>`'s activation on those dimensions and weakens, but does not collapse, the attention sink of layer 1;
# the loss rises about as much as for a random expert (which, unlike the super expert, also serves content tokens).
# So a super expert emerges here, but the sink survives without it, and the activations it writes are large (about
# 20x the median) rather than massive (Sun et al.'s 1000x): a 2-layer toy is far from the 48-layer models of Su et
# al. The numbers in the tables above are the ones this notebook measured.
#
# ## The same commands on a real MoE model
#
# The probes and interventions speak TransformerLens's MoE hook names, so they run on the zoo's tiny random OLMoE
# (and Mixtral, Qwen2-MoE), and on a local model directory, e.g. OLMoE-1B-7B on a GPU machine:
#
#     sinkbench probe super-experts --model /models/OLMoE-1B-7B-0924
#     sinkbench run --model /models/OLMoE-1B-7B-0924 -i "prune-expert:layers=3,experts=17"

# %%
tiny = zoo.load("tiny-olmoe")
text = from_text(tiny, "Summer is warm. Winter is cold. The cat sat on the mat and slept.", window=16)
print(probes.PROBES["routing"].summarize(probes.routing(tiny, text, progress=False)))
