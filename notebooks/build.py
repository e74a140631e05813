"""Build the notebooks from the cell sources below (the .ipynb files are committed without outputs).

    .venv/bin/python notebooks/build.py            # rewrites notebooks/*.ipynb

Each notebook reads like a short paper: the question, the method, the figure, what it means. It imports
everything from the package and defines no machinery of its own (09 defines one intervention: that is its
point).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).parent
SETUP = """import workbench as wb
from workbench.core import data
from workbench import experiment, figures, probes, zoo
from workbench.figures import plots

model = wb.load("smollm2-135m")
info = models.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_quickstart"] = [
    ("md", """# 01 · Quickstart: see the sink

**Question.** Does SmolLM2-135M put a large, input-independent share of its attention on the first token,
and where in the network does that start?

**Method.** We feed windows of Jane Austen's novels (BOS prepended, as the provenance of every result
records) and read the post-softmax attention of every query head through TransformerLens hooks. The
`sinks` probe averages the attention that queries q ≥ 1 pay to position 0; the *sink ratio* is the share of
heads above ε = 0.3 (Gu et al. 2025)."""),
    ("code", SETUP),
    ("code", """windows = data.corpus_windows(model, "austen", window=16, n_windows=32)
maps = probes.attention_maps(model, windows, layers=[0, 1, 15, 29], progress=False)
fig, _ = plots.attention_heatmaps(maps)
figures.show(fig)"""),
    ("md", """The first two layers attend locally (the diagonal); from the middle of the network on, the first
column lights up in every row: the attention sink. The log-scale panels show that the remaining mass is
spread thinly over the other keys."""),
    ("code", """sinks = probes.sinks(model, data.corpus_windows(model, "austen", window=64, n_windows=16), progress=False)
print(probes.PROBES["sinks"].summarize(sinks).splitlines()[-1])
fig, _ = plots.sink_grid(sinks)
figures.show(fig)"""),
    ("md", """## Controls: natural text, random tokens, one repeated token

Gu et al. (2025, Table 1) show that the sink survives random tokens but vanishes when one token is
repeated in RoPE models: all hidden states are then identical and attention becomes near-uniform. With BOS
prepended the first token always differs from the rest, so the control must be run without BOS too."""),
    ("code", """controls = probes.sink_ratio_controls(model, window=64, n=8)
fig, frame = plots.control_prompts(controls)
figures.show(fig)
frame"""),
    ("md", """**What it means.** SmolLM2 has a strong first-token sink (about three quarters of its heads above
ε = 0.3 on natural text). Without BOS the repeated-token control removes it completely, as Gu et al. find
for LLaMA and Mistral; with BOS the sink sits on BOS and survives. Random tokens keep it: the sink is not
about meaning."""),
]

NOTEBOOKS["02_ablating_sink_tokens"] = [
    ("md", """# 02 · Ablating sink tokens

**Question.** What happens to the model when attention can no longer go to the sink — masked out,
scaled down, or evicted by a sliding window — and which layers and heads care?

**Method.** Interventions from the catalogue edit the attention pattern through hooks:
`mask-sink` sets A[q, 0] = 0 for q ≥ 1 and renormalises each row; `scale-sink` multiplies A[q, 0] by γ
and renormalises (ZeroTuning); `window-attention` keeps the first `n_sinks` keys plus the last W
(StreamingLLM's mask). We measure the change of the next-token loss and the KL divergence to the
baseline, with bootstrap intervals over sequences."""),
    ("code", SETUP),
    ("code", """windows = data.corpus_windows(model, "austen", window=64, n_windows=8)
catalogue = ["mask-sink", "scale-sink:gamma=0.25", "scale-sink:gamma=4",
             "window-attention:window=8,n_sinks=0", "window-attention:window=8,n_sinks=4"]
effects = experiment.run(model, windows, catalogue, progress=False)
fig, table = plots.intervention_effects(effects)
figures.show(fig)
effects.filter(metric="kl").df[["intervention", "value", "ci_low", "ci_high"]]"""),
    ("md", """Taking attention away from the sink and renormalising changes the loss very little: the mass
is simply redistributed. Evicting the sink from a short window (n_sinks = 0) hurts much more than a
window that keeps the first tokens, the StreamingLLM observation in mask form."""),
    ("code", """per_layer = experiment.sweep(model, windows.subset(range(4)), "mask-sink", over="layer", progress=False)
fig, _ = plots.sweep_profile(per_layer, metric="kl", label="KL(baseline || masked) per token")
figures.show(fig)"""),
    ("md", """## Which heads matter?

A full (layer, head) sweep is 270 forward passes; attribution patching estimates it from one forward
and one backward pass (gradient × difference). We show the estimate for every head."""),
    ("code", """from workbench.attribution import attribution_sweep

estimate = attribution_sweep(model, windows, "mask-sink", progress=False)
fig, _ = plots.sweep_heatmap(wb.Results([{**r, "metric": "delta_loss"} for r in estimate], estimate.provenance))
figures.show(fig)"""),
    ("md", """**What it means.** Per head, masking the sink moves the loss by a few hundredths of a nat at most,
in both directions, and only a handful of heads stand out: most heads can do without the sink if their
attention is renormalised (the whole-model mask costs more than any single head). The sink matters as a
place to put attention when a head has nothing to do — see notebook 04 for what it *writes*."""),
]

NOTEBOOKS["03_patching_values"] = [
    ("md", """# 03 · Patching value vectors

**Question.** The sink's value vector is what a head writes when it "does nothing". What happens when we
swap value vectors between inputs, and how does grouped-query attention (GQA) complicate this?

**Method.** `patch-values` replaces the value vectors at chosen key positions with those of another input
(here: the next sequence of the batch, `source=roll:1`). SmolLM2 has 9 query heads but only 3 key/value
heads, so one value head serves three query heads. TransformerLens 4 has no per-query-head value hook:
the edit happens on the shared value head, and the query heads outside the intervention's scope are
restored exactly at `hook_z`."""),
    ("code", SETUP),
    ("code", """group = info.group_size
for kv in range(info.n_kv_heads):
    print(f"value head {kv} serves query heads {[h for h in range(info.n_heads) if h // group == kv]}")"""),
    ("code", """import torch

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
    print(f"head {head}: max |change of z| = {value:.2e}")"""),
    ("md", """Only query head 4 changes; heads 3 and 5 read the same value head but are restored (their
change is at float precision). Now the effect on the model, layer by layer: patching the values of
positions 8–15 from another text."""),
    ("code", """sweep = experiment.sweep(model, windows, "patch-values:source=roll:1,positions=8-15", over="layer",
                         progress=False)
fig, _ = plots.sweep_profile(sweep, metric="kl", label="KL to the baseline per token")
figures.show(fig)"""),
    ("code", """sink_patch = experiment.run(model, windows, ["patch-values:source=roll:1,positions=0",
                                             "patch-values:source=roll:1,positions=1"], progress=False)
sink_patch.filter(metric="kl").df[["intervention", "value"]]"""),
    ("md", """**What it means.** Patching the sink's values (position 0) from another input changes nothing
at all: position 0 only ever sees BOS in a causal model, so its value vector is the same for every input.
Patching position 1 — a real word — does change the predictions. The sink's value is input-independent,
which is the premise of the implicit-bias account (notebook 04)."""),
]

NOTEBOOKS["04_implicit_attention_bias"] = [
    ("md", """# 04 · The implicit attention bias

**Question.** The survey's *implicit attention bias* account (§4.3; Sun et al. 2024 §4.2) says the sink
term A[q, 0]·v₀W_O is a near-constant bias: zeroing it hurts, replacing it by a constant does not. Is that
true for SmolLM2?

**Method.** (1) Decompose every head's output and measure how constant the sink term is across queries
and inputs (a coefficient of variation, against the term of token 1 as the null). (2) The causal test:
`zero-implicit-bias` removes the term, `mean-implicit-bias` replaces it by mean(A[q,0]) · mean(v₀) per
head (collected in a first pass over all evaluated sequences)."""),
    ("code", SETUP),
    ("code", """windows = data.corpus_windows(model, "austen", window=64, n_windows=8)
bias = probes.implicit_bias(model, windows, progress=False)
fig, _ = plots.implicit_bias_constancy(bias)
figures.show(fig)"""),
    ("md", """The sink term varies an order of magnitude less than the term of an ordinary token, and in the
deep layers it is a large part of what a head writes. BOS's value vector is identical across inputs
(the maximum relative deviation is printed below)."""),
    ("code", """print("max relative deviation of v_0 across inputs:",
      bias.filter(metric="sink_value_max_deviation_relative").df.value.max())
test = experiment.run(model, windows, ["zero-implicit-bias", "mean-implicit-bias", "mask-sink"], progress=False)
fig, _ = plots.intervention_effects(test)
figures.show(fig)"""),
    ("code", """small = data.corpus_windows(model, "austen", window=64, n_windows=4)
zero = experiment.sweep(model, small, "zero-implicit-bias", over="layer", progress=False)
mean = experiment.sweep(model, small, "mean-implicit-bias", over="layer", progress=False)
fig, _ = plots.sweep_profile(zero + mean)
figures.show(fig)"""),
    ("md", """**What it means.** Removing the sink term costs SmolLM2 between a third and half a nat per token; a
single constant per head recovers about two thirds of that, but not all — the term is nearly, not perfectly, constant
(its coefficient of variation is far from zero in some layers). The per-layer sweep shows where the
constant is a good replacement and where it is not."""),
]

NOTEBOOKS["05_massive_activations"] = [
    ("md", """# 05 · Massive activations

**Question.** Sun et al. (2024) find a few residual-stream entries thousands of times larger than the
median, at fixed dimensions of the first token and the first delimiter, acting as fixed biases: setting
them to zero destroys LLaMA2-7B (perplexity 5.47 → ∞), setting them to their mean changes nothing. Does
SmolLM2 have them, and do they behave the same?

**Method.** The `massive-activations` probe tracks the top-k |activation| per layer with its position,
token and dimension; the `massive-activations` intervention finds the massive dimensions at BOS in a
first pass and sets them to zero or to their mean."""),
    ("code", SETUP),
    ("code", """windows = data.corpus_windows(model, "austen", window=128, n_windows=4)
massive = probes.massive_activations(model, windows, progress=False)
print(probes.PROBES["massive-activations"].summarize(massive))
fig, _ = plots.massive_layerwise(massive)
figures.show(fig)"""),
    ("code", """from workbench.probes.activations import layer_snapshot

fig, _ = plots.massive_3d(layer_snapshot(model, "Summer is warm. Winter is cold."))
figures.show(fig)"""),
    ("code", """test = experiment.run(model, windows, ["massive-activations:mode=zero", "massive-activations:mode=mean"],
                      progress=False)
print(test.provenance["prepared"])
fig, _ = plots.intervention_effects(test)
figures.show(fig)"""),
    ("md", """**What it means.** SmolLM2 grows massive activations too: a spike of about a thousand on the
first space/delimiter token from layer 2, and at BOS two dimensions reaching about 25,000 from layer 11 on
(|a| / median > 10,000). Zeroing the BOS ones at the layer where they appear makes the loss explode by
about 12 nats; replacing them by their mean changes nothing — they are fixed but important biases,
exactly Sun et al.'s Table 3."""),
]

NOTEBOOKS["06_encoder_sinks"] = [
    ("md", """# 06 · Sinks in an encoder (MiniLM)

**Question.** BERT-base famously parks attention on [SEP] in its middle layers (Clark et al. 2019). Where
does the sink of all-MiniLM-L6-v2, a distilled 6-layer BERT used for sentence embeddings, sit — and what
does ablating it do?

**Method.** The checkpoint has no trained MLM head, so its logits mean nothing: the runner refuses loss
and uses the cosine similarity of the mean-pooled sentence embedding to the baseline instead. Windows are
[CLS] … [SEP]. The BERT adapter discards edits of `hook_pattern`, so pattern interventions are applied
through the head outputs (z += (A′ − A) v, exact)."""),
    ("code", """import workbench as wb
from workbench.core import data
from workbench import experiment, figures, probes
from workbench.figures import plots

model = wb.load("minilm-l6")
windows = data.corpus_windows(model, "austen", window=48, n_windows=8)
special = probes.special_token_attention(model, windows)
fig, _ = plots.special_tokens(special)
figures.show(fig)
special.df.groupby("target").value.mean()"""),
    ("code", """ablations = experiment.run(model, windows, ["mask-sink:sink=cls", "mask-sink:sink=sep",
                                           "zero-implicit-bias:sink=cls", "zero-implicit-bias:sink=sep"],
                           progress=False)
fig, _ = plots.intervention_effects(ablations, metric="embedding_change")
figures.show(fig)
ablations.filter(metric="embedding_cosine").df[["intervention", "value"]]"""),
    ("md", """**What it means.** In this distilled model the sink is [CLS], not [SEP]: [CLS] receives far
more attention than [SEP] or punctuation. Masking [CLS] and renormalising moves the sentence embedding a
lot, because the attention it absorbed is pushed onto content tokens; removing only what [CLS] *writes*
(the `zero-implicit-bias` term) barely moves it. High attention, small contribution: the no-op signature
of Kobayashi et al. (2020), here in a sentence encoder. [SEP] matters little either way."""),
]

NOTEBOOKS["07_streaming_with_sinks"] = [
    ("md", """# 07 · Streaming with sinks (StreamingLLM)

**Question.** A KV cache that keeps only the last W tokens lets a model read any length in bounded
memory. Xiao et al. (2024) found that such *window attention* breaks down as soon as the first tokens
leave the cache — they are the attention sinks — and that keeping just 4 of them next to the window
restores the quality of sliding-window re-computation. Does SmolLM2 behave the same?

**Method.** `workbench.streaming` reads a long text (the first 1,024 tokens of *Emma*) through a cache
under a policy and records the NLL of every token. Positions are assigned inside the cache, as StreamingLLM
does for RoPE. The fast chunked path computes the same numbers as the token-by-token cache (to float
rounding; measured in `workbench/streaming.py`). Here: the first 768 tokens of *Emma*, a cache of 128."""),
    ("code", SETUP),
    ("code", """from workbench import streaming
from workbench.streaming import Dense, Recompute, Sinks, Window

text = streaming.long_text(model, corpus="austen", document="Emma", max_tokens=768)
curves = streaming.run(model, text, [Dense(), Window(128), Sinks(4, 128), Recompute(128)], chunk=128,
                       recompute_stride=32, curve_bin=64, progress=False)
fig, _ = plots.streaming_curves(curves)
figures.show(fig)
curves.filter(metric="perplexity").df[["policy", "sinks", "window", "value", "ci_low", "ci_high"]]"""),
    ("md", """Once the cache is full (token 128), window attention loses the first tokens and its loss jumps
above the others; keeping 4 sinks tracks sliding-window re-computation. How many sinks are needed?"""),
    ("code", """table = streaming.run(model, text, [Sinks(s, 128) for s in (0, 1, 2, 4, 8)], chunk=128,
                      curve_bin=768, progress=False)
fig, frame = plots.streaming_perplexity(table)
figures.show(fig)
frame"""),
    ("md", """## Your own cache policy

A policy is an object with a `keep(view)` method that picks the cache slots to keep. Here: keep the
keys that received the most attention so far (H2O-style). Custom policies run on the exact, token-by-token
path."""),
    ("code", """import dataclasses

import torch
from workbench.streaming import CachePolicy


@dataclasses.dataclass(frozen=True)
class KeepTopAttended(CachePolicy):
    window: int = 64
    name = "top-attended"

    def keep(self, view):
        top = view.attention_sum[:-1].topk(self.window - 2).indices
        return torch.cat([top, torch.tensor([view.n - 1])])


short = streaming.long_text(model, corpus="austen", document="Emma", max_tokens=192)
mine = streaming.run(model, short, [KeepTopAttended(48), Window(48), Sinks(4, 48)], progress=False)
mine.filter(metric="perplexity").df[["policy", "sinks", "window", "value", "path"]]"""),
    ("md", """**What it means.** SmolLM2 reproduces the StreamingLLM effect in shape: evicting the first
tokens costs perplexity, keeping a single first token recovers almost all of it (more do not help at this
length), close to re-computation; the attention-greedy policy beats the window but not the sinks. The collapse is milder than Xiao's Llama-2 (thousands of perplexity): about a factor of two
at these cache sizes (see `sinkbench stream` for the 8k-token table)."""),
]

NOTEBOOKS["08_mitigation_lab"] = [
    ("md", """# 08 · Mitigation lab: train small transformers and watch sinks emerge — or not

**Question.** Which changes to attention stop a sink from forming? Guo et al. (2024) showed that a
one-layer transformer trained on *Bigram-Backcopy* grows a sink within a few hundred steps: after a
trigger character the model must copy the character before the trigger (the head is *active*); everywhere
else the next character follows bigram statistics that the MLP knows, and the head has nothing to do. A
softmax head cannot output nothing, so it parks its attention on `<s>` and shrinks `<s>`'s value — a
*dormant* head. The mitigations of the literature give the head another way to do nothing: softmax+1
(Miller 2023), sigmoid without normaliser and a learnable key bias with v = 0 (Gu et al. 2025), ReLU
attention (Guo et al. 2024), an output gate (Qiu et al. 2025), a learnable sink logit (gpt-oss).

**Method.** `workbench.toy` trains the seven variants from the same seed (same batches, same shared
initial weights) and logs the sink while they learn. Here the reduced `figure` preset (d_model 64,
T = 32, 400 steps, about ten seconds a variant); `sinkbench train` runs the full one (d_model 256, T = 64,
1,000 steps, about three minutes a variant) — its numbers are in the mitigation-lab section of the README."""),
    ("code", """import tempfile
from pathlib import Path

import torch
from workbench import experiment, figures, probes, toy, zoo
from workbench.figures import plots
from workbench.toy.tasks import load_task

torch.set_num_threads(1)  # toys this small gain nothing from more threads, and a busy machine punishes them

RUNS = Path(tempfile.mkdtemp(prefix="toy-runs-"))
runs = {}
for variant in toy.VARIANTS:
    runs[variant] = RUNS / variant
    toy.train(runs[variant], *toy.preset("figure", attention=variant, seed=0), progress=False, log=lambda line: None)
curves = toy.emergence_results(runs)
fig, _ = plots.emergence_curves(curves)
figures.show(fig)"""),
    ("md", """`Attn_<s>` is the weight that multiplies `v_<s>`, averaged over the positions where the head has
nothing to do (queries whose token is not a trigger). The table gives each variant's last logged values,
with the weight its extra zero-value slot took (`sink_slot`) where it has one, and the mean gate value for
the gated model."""),
    ("code", """import pandas as pd

table = pd.DataFrame({variant: toy.summarize(toy.read_curves(run)) for variant, run in runs.items()}).T
slot = curves.df[(curves.df.metric.isin(["sink_slot", "gate"]))].sort_values("step").groupby(["variant", "metric"]).value.last()
table = table.join(slot.unstack())
table[["first_step_bos_attention_ge_0.5", "final_bos_attention", "final_bos_share", "sink_slot", "gate",
       "final_backcopy_risk", "final_bigram_risk", "final_v_bos_norm", "final_v_other_norm"]].round(3)"""),
    ("md", """## What the sink does: a causal test on the trained toys

A trained toy loads back through the zoo like any model, so the catalogue's interventions run on it
unchanged. If the softmax head's sink is how it does nothing, then taking its attention off `<s>`
(`mask-sink`, the weight spread over the other keys) should hurt — the head starts writing the other
tokens' values — while removing `<s>`'s own contribution (`zero-sink-value`) should barely matter,
because its value has shrunk. Variants that do nothing another way should care less about the mask."""),
    ("code", """effects = []
for variant in ("softmax", "softmax1", "relu", "gated", "sink-logit"):
    model = models.load(f"toy:{runs[variant]}")
    windows = load_task(runs[variant]).dataset(128, seed=1)
    result = experiment.run(model, windows, ["mask-sink", "zero-sink-value", "mean-implicit-bias"], progress=False)
    frame = result.filter(metric="delta_loss").df[["intervention", "value", "ci_low", "ci_high"]]
    effects.append(frame.assign(variant=variant))
    if variant == "softmax":
        fig, _ = plots.intervention_effects(result)
        figures.show(fig)
pd.concat(effects).pivot(index="variant", columns="intervention", values="value").round(4)"""),
    ("md", """The probes apply too: `norms` shows the drained value — `<s>` takes most of the attention, but
its value vector is several times shorter than the other tokens'."""),
    ("code", """softmax_toy = models.load(f"toy:{runs['softmax']}")
windows = load_task(runs["softmax"]).dataset(128, seed=1)
norms = probes.norms(softmax_toy, windows, progress=False)
norms.df[norms.df.metric.isin(["attention_share_sink", "contribution_share_sink", "value_norm_sink",
                               "value_norm_other"])][["metric", "layer", "head", "value"]].round(3)"""),
    ("md", """**What it means.** On this seed:

- **softmax** grows the sink as Guo et al. describe — `Attn_<s>` passes 0.5 after about a hundred steps
  and ends near 1 — and drains `v_<s>` to a fraction of the other values' norm. Masking the sink costs
  loss, zeroing `<s>`'s value costs nothing: the sink is the head's way of doing nothing.
- **softmax+1, sink-logit and kv-bias** give the head a zero-value slot, yet it barely uses it (a few
  per cent of the weight): `<s>` still becomes the sink, with a drained value. At this size and length
  the first token is as good a place to park as the slot, and here the optimiser finds it first. A
  surprise worth reporting: the slot removes the *need* for a sink, not the sink. It is a race — at full
  size with seed 1 the slot wins and no `<s>` sink forms (the README's two-seed table).
- **sigmoid** first puts weight on `<s>` (every weight starts near sigmoid(0) = 0.5) and then turns the
  whole row down: its raw weight on `<s>` ends small while the share of what is left stays high.
- **ReLU attention** never forms a sink: the head does nothing by giving every key zero weight.
- **gated** keeps a partial sink with an undrained `v_<s>`; its gate (mean about 0.2 at bigram positions)
  switches the head off instead, so here zeroing `<s>`'s value hurts more than masking it.

The full-size runs (`sinkbench train`, README) make the same comparison at 1,000 steps."""),
]

NOTEBOOKS["09_compose_your_own"] = [
    ("md", """# 09 · Compose your own intervention

**Question.** Can a new hypothesis be tested in a few lines? Suppose the sink works by *concentrating*
attention: sharpen every row (raise A to a power, renormalise) and see whether sharpening hurts more
where sinks are strong.

**Method.** Subclass one of the catalogue's mechanisms (`AttentionEdit`: change the post-softmax pattern
of the heads in scope), register it, then use it like any catalogue entry: by name in the runner, composed
with `+`, swept over layers, plotted with the shared figure layer."""),
    ("code", SETUP),
    ("code", """from interventions import AttentionEdit, register


@register("sharpen-attention")
class SharpenAttention(AttentionEdit):
    \"\"\"Raise each attention row to a power and renormalise (power > 1 sharpens, < 1 flattens).\"\"\"

    power: float = 2.0

    def edit(self, pattern, ctx, layer, scores=None):
        sharpened = pattern ** self.power
        return sharpened / sharpened.sum(-1, keepdim=True), None"""),
    ("code", """windows = data.corpus_windows(model, "austen", window=64, n_windows=4)
results = experiment.run(model, windows, ["sharpen-attention:power=2", "sharpen-attention:power=0.5",
                                          "sharpen-attention:power=2 + mask-sink"], progress=False)
fig, _ = plots.intervention_effects(results)
figures.show(fig)"""),
    ("code", """sweep = experiment.sweep(model, windows, "sharpen-attention:power=2", over="layer", progress=False)
sinks = probes.sinks(model, windows, progress=False)
fig, _ = plots.sweep_profile(sweep)
figures.show(fig)
strength = sinks.filter(metric="first_token_attention").df.groupby("layer").value.mean()
effect = sweep.filter(metric="delta_loss").df.set_index("layer").value
print("correlation between a layer's sink strength and the cost of sharpening it:",
      round(float(strength.corr(effect)), 3))"""),
    ("md", """**What it means.** A dozen lines defined a new intervention; it ran through the same runner,
composition, sweep and figure code as the catalogue, with bootstrap intervals and provenance (its
parameters are in `results.provenance["interventions"]`, rebuildable with `interventions.from_spec`)."""),
]


def build(names: list[str] | None = None) -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        if names and name not in names:
            continue
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                    for kind, src in cells]
        for index, cell in enumerate(nb.cells):
            cell["id"] = f"{name[:2]}-{index:02d}"  # stable ids: rebuilding gives identical files
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build():
        print(f"wrote {path}")
