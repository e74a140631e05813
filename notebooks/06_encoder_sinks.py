# %% [markdown]
# # 06 · Sinks in an encoder (MiniLM)
#
# **Question.** BERT-base famously parks attention on [SEP] in its middle layers (Clark et al. 2019). Where
# does the sink of all-MiniLM-L6-v2, a distilled 6-layer BERT used for sentence embeddings, sit — and what
# does ablating it do?
#
# **Method.** The checkpoint has no trained MLM head, so its logits mean nothing: the runner refuses loss
# and uses the cosine similarity of the mean-pooled sentence embedding to the baseline instead. Windows are
# [CLS] … [SEP]. The BERT adapter discards edits of `hook_pattern`, so pattern interventions are applied
# through the head outputs (z += (A′ − A) v, exact).

# %%
from workbench import data, experiment, plots, probes, zoo

model = zoo.load("minilm-l6")
windows = data.corpus_windows(model, "austen", window=48, n_windows=8)
special = probes.special_token_attention(model, windows)
fig, _ = plots.special_tokens(special)
plots.show(fig)
special.df.groupby("target").value.mean()

# %%
ablations = experiment.run(model, windows, ["mask-sink:sink=cls", "mask-sink:sink=sep",
                                           "zero-implicit-bias:sink=cls", "zero-implicit-bias:sink=sep"],
                           progress=False)
fig, _ = plots.intervention_effects(ablations, metric="embedding_change")
plots.show(fig)
ablations.filter(metric="embedding_cosine").df[["intervention", "value"]]

# %% [markdown]
# **What it means.** In this distilled model the sink is [CLS], not [SEP]: [CLS] receives far
# more attention than [SEP] or punctuation. Masking [CLS] and renormalising moves the sentence embedding a
# lot, because the attention it absorbed is pushed onto content tokens; removing only what [CLS] *writes*
# (the `zero-implicit-bias` term) barely moves it. High attention, small contribution: the no-op signature
# of Kobayashi et al. (2020), here in a sentence encoder. [SEP] matters little either way.
