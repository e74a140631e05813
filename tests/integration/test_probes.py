"""Probes on the bundled models agree with plain transformers (eager attention, output_attentions=True)."""

import pytest
import torch

from workbench import probes, zoo
from workbench.core import data, sites

# The bridge and HF eager compute the same softmax in fp32; measured max |diff| 1.5e-7 (SmolLM2).
AGREEMENT = 1e-4


@pytest.mark.parametrize("fixture", ["smollm2", "gemma3", "minilm"])
def test_first_token_attention_agrees_with_hf_eager(fixture, request):
    model = request.getfixturevalue(fixture)
    ds = data.corpus_windows(model, "austen", window=64, n_windows=8)
    res = probes.sinks(model, ds, progress=False)
    hf, _ = zoo.hf_reference(zoo.info(model).name)
    with torch.no_grad():
        attentions = hf(ds.tensor(), output_attentions=True).attentions
    worst = 0.0
    for layer, pattern in enumerate(attentions):
        expected = pattern[:, :, 1:, 0].mean(dim=(0, 2))
        for head in range(pattern.shape[1]):
            worst = max(worst, abs(expected[head].item() - res.value("first_token_attention", layer=layer, head=head)))
    assert worst <= AGREEMENT


def test_hook_attn_scores_placement_on_the_real_adapters(smollm2, gemma3, minilm):
    assert sites.scores_are_pre_softmax(smollm2) and sites.scores_are_pre_softmax(gemma3)
    assert not sites.scores_are_pre_softmax(minilm)


def test_smollm2_has_sinks_on_natural_text_and_none_on_repeated_tokens_without_bos(smollm2):
    """Gu et al. 2025 Table 1 in shape: the sink persists on natural and random tokens, vanishes on one
    repeated token (RoPE: identical hidden states give near-uniform attention)."""
    ratio = {}
    for kind in ("natural", "random", "repeated"):
        ds = data.control_prompts(smollm2, kind, window=64, n=8, seed=0, prepend_bos=False)
        ratio[kind] = probes.sinks(smollm2, ds, eps=[0.3], progress=False).value("sink_ratio", eps=0.3, layer=None)
    assert ratio["natural"] > 0.5 and ratio["random"] > 0.5 and ratio["repeated"] < 0.05


def test_smollm2_bos_value_is_input_independent_and_the_sink_term_is_nearly_constant(smollm2):
    ds = data.corpus_windows(smollm2, "austen", window=64, n_windows=8)
    res = probes.implicit_bias(smollm2, ds, progress=False)
    assert res.filter(metric="sink_value_max_deviation_relative").df.value.max() < 1e-4
    frame = res.df
    deep = frame[frame.layer >= 12]
    sink_cv = deep[deep.metric == "sink_term_cv"].value.median()
    null_cv = deep[deep.metric == "null_term_cv"].value.median()
    assert sink_cv < null_cv / 3
