"""The LLaVA trained here (`sinkbench models fetch --all` trains it): HF-eager agreement through the ViT-tower
adapter, held-out accuracy per question type, and the mixed probes on it."""

import json

import pytest
import torch

from interventions.multimodal import answer_accuracy
from workbench import probes, zoo
from workbench.core import positions
from workbench.multimodal import mixed_set
from workbench.vision.images import to_model_input

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llava():
    if not zoo.is_cached("shapes-llava"):
        pytest.fail("shapes-llava is not trained: run `make models` (or `sinkbench models fetch shapes-llava`) first")
    return zoo.load("shapes-llava")


@pytest.fixture(scope="module")
def data(llava):
    return mixed_set(llava, n=64, seed=1)


def test_bridge_agrees_with_hf_eager(llava, data):
    hf, _ = zoo.hf_reference("shapes-llava")
    info = zoo.info(llava)
    pixels = to_model_input(data.scenes.pixels[:8], info.image_mean, info.image_std)
    with torch.no_grad():
        expected = hf(input_ids=positions.mixed_ids(data.tokens[:8]), pixel_values=pixels).logits
        got = llava(data.model_inputs(list(range(8)), data.tokens[:8]))
    assert type(llava.adapter).__name__ == "LlavaViTArchitectureAdapter"
    assert (got - expected).abs().max() < 1e-4


def test_answers_beat_chance_on_held_out_scenes(llava, data):
    training = json.loads((zoo.model_dir("shapes-llava") / "training.json").read_text())
    # measured at training (256 held-out scenes per question): shape 0.875, colour 0.754, position 0.676, count 0.637
    chance = {"shape": 0.25, "colour": 0.25, "position": 0.5, "count": 0.5}
    for question, accuracy in training["final_accuracy"].items():
        assert accuracy > chance[question] + 0.1, question
    res = answer_accuracy(llava, data, ["none"])
    overall = res.df[(res.df.metric == "accuracy") & (res.df.question == "all")].value.item()
    assert overall > 0.6


def test_text_queries_attention_partitions_and_sinks_are_rare(llava, data):
    res = probes.mixed_attention(llava, data, threshold=0.05, progress=False)
    per_head = res.df[res.df.metric == "attention_share"].groupby(["layer", "head"]).value.sum()
    assert torch.allclose(torch.tensor(per_head.values), torch.ones(len(per_head), dtype=torch.float64), atol=1e-5)
    sinks = res.df[res.df.metric == "visual_sink_fraction"].value
    assert (sinks < 0.1).all()  # measured: at most 2.2 % of the visual tokens (layer 2, 128 scenes)
