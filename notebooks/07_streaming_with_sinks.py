# %% [markdown]
# # 07 · Streaming with sinks (StreamingLLM)
#
# **Question.** A KV cache that keeps only the last W tokens lets a model read any length in bounded
# memory. Xiao et al. (2024) found that such *window attention* breaks down as soon as the first tokens
# leave the cache — they are the attention sinks — and that keeping just 4 of them next to the window
# restores the quality of sliding-window re-computation. Does SmolLM2 behave the same?
#
# **Method.** `workbench.streaming` reads a long text (the first 1,024 tokens of *Emma*) through a cache
# under a policy and records the NLL of every token. Positions are assigned inside the cache, as StreamingLLM
# does for RoPE. The fast chunked path computes the same numbers as the token-by-token cache (to float
# rounding; tested in `tests/integration/test_streaming.py`). Here: the first 768 tokens of *Emma*, a cache of 128.

# %%
from workbench import plots, zoo

model = zoo.load("smollm2-135m")
info = zoo.info(model)
print(info.name, f"{info.n_layers} layers x {info.n_heads} heads ({info.n_kv_heads} KV heads)")

# %%
from workbench import streaming
from workbench.streaming import Dense, Recompute, Sinks, Window

text = streaming.long_text(model, corpus="austen", document="Emma", max_tokens=768)
curves = streaming.stream_policies(model, text, [Dense(), Window(128), Sinks(4, 128), Recompute(128)],
                                   chunk=128, recompute_stride=32, curve_bin=64, progress=False)
fig, _ = plots.streaming_curves(curves)
plots.show(fig)
curves.filter(metric="perplexity").df[["policy", "sinks", "window", "value", "ci_low", "ci_high"]]

# %% [markdown]
# Once the cache is full (token 128), window attention loses the first tokens and its loss jumps
# above the others; keeping 4 sinks tracks sliding-window re-computation. How many sinks are needed?

# %%
table = streaming.stream_policies(model, text, [Sinks(s, 128) for s in (0, 1, 2, 4, 8)], chunk=128,
                                  curve_bin=768, progress=False)
fig, frame = plots.streaming_perplexity(table)
plots.show(fig)
frame

# %% [markdown]
# ## Your own cache policy
#
# A policy is an object with a `keep(view)` method that picks the cache slots to keep. Here: keep the
# keys that received the most attention so far (H2O-style). Custom policies run on the exact, token-by-token
# path.

# %%
import dataclasses

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
mine = streaming.stream_policies(model, short, [KeepTopAttended(48), Window(48), Sinks(4, 48)],
                                 progress=False)
mine.filter(metric="perplexity").df[["policy", "sinks", "window", "value", "path"]]

# %% [markdown]
# **What it means.** SmolLM2 reproduces the StreamingLLM effect in shape: evicting the first
# tokens costs perplexity, keeping a single first token recovers almost all of it (more do not help at this
# length), close to re-computation; the attention-greedy policy beats the window but not the sinks. The collapse is milder than Xiao's Llama-2 (thousands of perplexity): about a factor of two
# at these cache sizes (see `sinkbench stream` for the 8k-token table).
