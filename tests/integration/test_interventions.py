"""The catalogue on the bundled models: the causal tests behave as the literature says they should."""

import pytest
import torch

from workbench import experiment
from workbench.core import data


@pytest.fixture(scope="module")
def smol_data(smollm2):
    return data.corpus_windows(smollm2, "austen", window=64, n_windows=4)


def test_identity_and_value_routes_agree_on_smollm2(smollm2, smol_data):
    tokens = smol_data.tensor()
    with torch.no_grad():
        base = smollm2(tokens)
        with experiment.hooked(smollm2, "patch-values:source=roll:0", tokens, data=smol_data):
            same = smollm2(tokens)
    assert torch.equal(base, same)
    res = experiment.run(smollm2, smol_data, ["zero-implicit-bias", "zero-sink-value"], progress=False)
    assert res.value("loss", intervention="zero-implicit-bias") == pytest.approx(
        res.value("loss", intervention="zero-sink-value"), abs=1e-4)


def test_massive_activations_zero_destroys_mean_keeps_smollm2(smollm2, smol_data):
    """Sun et al. 2024 Table 3 in shape: the BOS massive activations are fixed, important biases."""
    res = experiment.run(smollm2, smol_data, ["massive-activations:mode=zero", "massive-activations:mode=mean"],
                         progress=False)
    assert res.value("delta_loss", intervention="massive-activations(mode='zero')") > 3.0
    assert abs(res.value("delta_loss", intervention="massive-activations(mode='mean')")) < 0.01
    assert res.provenance["prepared"]["massive-activations(mode='zero')"]["layer"] >= 1


def test_gemma_gqa_routes_agree(gemma3):
    ds = data.corpus_windows(gemma3, "austen", window=48, n_windows=2)
    res = experiment.run(gemma3, ds, ["zero-implicit-bias:layers=5,11,17", "zero-sink-value:layers=5,11,17"],
                         progress=False)
    losses = [r["value"] for r in res.filter(metric="loss") if r["intervention"] != "none"]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def test_minilm_uses_embedding_metrics_on_its_sink(minilm):
    ds = data.corpus_windows(minilm, "austen", window=48, n_windows=4)
    res = experiment.run(minilm, ds, ["mask-sink", "mask-sink:sink=sep"], progress=False)
    cls = res.value("embedding_cosine", intervention="mask-sink")
    sep = res.value("embedding_cosine", intervention="mask-sink(sink='sep')")
    assert cls < sep <= 1.0  # the [CLS] sink matters more than [SEP] in this distilled model
    with pytest.raises(Exception, match="means nothing"):
        experiment.run(minilm, ds, ["mask-sink"], metrics=["loss"], progress=False)
