# %% [markdown]
# # 11 · Quantising around sinks
#
# **Question.** Compressing a model's KV cache or activations to a few bits costs perplexity. IntactKV
# (Liu et al. 2024) keeps the BOS token's keys and values in full precision, KVQuant keeps the first tokens in
# fp16, PrefixQuant keeps outlier tokens out of the per-tensor scales. How much of the quantisation damage
# comes from the sink tokens, on SmolLM2?
#
# **Method.** The catalogue's quantisation family (`interventions.quant`) fake-quantises — quantises and
# dequantises in place, asymmetric min-max, round to nearest — the keys (after RoPE, as a KV cache holds them)
# and values (`quantize-kv`) or the inputs of every linear layer (`quantize-activations`), with `keep=` naming
# the tokens left in full precision. `experiment.quantization.report` scores each configuration against the
# full-precision model (loss, perplexity, KL, top-1, bootstrap CIs over windows) and the sink share of the
# damage, D_sink = delta_loss(nothing kept) − delta_loss(sinks kept), with a paired CI. A configuration whose
# perplexity exceeds 10× the baseline is flagged *destroyed*. Here: 4 windows of 128 tokens of Austen (small,
# so that the notebook runs in a few minutes on a laptop CPU; `bench/quantization.py` runs 16).

# %%
from workbench import data, plots, zoo
from workbench.experiment import quantization

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads), d_head {info.d_head}")
windows = data.corpus_windows(model, "austen", window=128, n_windows=4)

# %% [markdown]
# ## The KV cache: perplexity against bits, with and without the sink kept

# %%
kv = quantization.report(model, windows, quantization.kv_grid(bits=(2, 3, 4), keep=("none", "bos")),
                         batch_size=4, progress=False)
fig, frame = plots.quant_kv_bits(kv)
plots.show(fig)
frame[["keep", "bits", "perplexity", "delta_loss", "d_sink", "d_sink_ci_low", "d_sink_ci_high", "destroyed"]]

# %% [markdown]
# Per-token KV quantisation costs about a tenth of a nat at 4 bits and more than half a nat at 3; keeping the
# BOS token's keys and values in full precision removes about a quarter of the 3-bit damage (D_sink > 0, its
# paired interval above zero), the IntactKV direction, while at 2 bits the model is destroyed whatever is kept.
# Per token, each cached entry has its own range, so the sink does not spoil the other tokens' scales: what
# keeping it saves is the precision of the sink's own key and value, which every later query reads.
#
# ## Activations: per tensor vs per token
#
# A per-tensor scale is one range for the whole sequence; the massive activations at the sink (notebook 05)
# stretch it, so every other token is left with a handful of levels (PrefixQuant; Bondarenko et al. 2023).

# %%
acts = quantization.report(model, windows, quantization.activation_grid(bits=(8,), keep=("none", "bos")),
                           batch_size=4, progress=False)
fig, frame = plots.quant_activations(acts)
plots.show(fig)
frame[["granularity", "keep", "perplexity", "delta_loss", "d_sink", "destroyed"]]

# %% [markdown]
# ## A quantised cache while streaming
#
# A one-pass evaluation never exercises a cache. `workbench.streaming` reads a long text token by token (or in
# exact chunks) through a bounded cache, and `kv_quant=` quantises what the cache holds at every step. With a
# StreamingLLM cache (4 sinks + 124 recent tokens) the BOS token stays in the cache, so `keep="bos"` can keep
# it in full precision for the whole stream.

# %%
from workbench import streaming
from workbench.streaming import KVCacheQuant, Sinks

text = streaming.long_text(model, corpus="austen", document="Emma", max_tokens=512)
quants = [None, KVCacheQuant(bits=3), KVCacheQuant(bits=3, keep="bos")]
stream = streaming.stream_policies(model, text, [Sinks(4, 128)], kv_quant=quants, chunk=128,
                                   curve_bin=512, progress=False)
stream.filter(metric="perplexity").df[["policy", "sinks", "window", "kv_bits", "kv_keep", "value", "ci_low",
                                        "ci_high", "path"]]

# %% [markdown]
# The 3-bit cache costs the stream about as much as the one-pass evaluation (about +0.6 nats); keeping BOS
# saves less here (the two perplexities' intervals overlap; they are block-bootstrap intervals, not paired).
#
# **What it means.** On SmolLM2 the sink is where per-tensor activation quantisation breaks: at 8 bits with one
# range per sequence the model is destroyed, and keeping the BOS token out of the range brings it back to
# about half a nat from full precision, while per-token scales do not notice the sink at all. For the KV cache
# the sink's share is smaller, about a quarter of the 3-bit damage in one pass. Published anchors are larger
# models (IntactKV: LLaMA-2-7B with INT3 weights, C4 8.31 → 8.18; Bondarenko et al.: OPT-125m W8A8 15.84 →
# 21.18 vanilla); we reproduce the directions, not the sizes.
