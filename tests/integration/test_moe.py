"""The MoE toy trained here (`sinkbench models fetch moe-toy-bb`; `make models` trains it): a super expert emerges
at the sink, and pruning it vs random experts is the causal test the MoE notebook and figure report (issue 19)."""

import pytest
import torch

from workbench import probes, zoo
from workbench.gallery.recipes_moe import TOY, prune_test
from workbench.toy.tasks import load_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    if not zoo.is_cached(TOY):
        pytest.fail(f"{TOY} is not trained: run `make models` (or `sinkbench models fetch {TOY}`) first")
    model = zoo.load(TOY)
    return model, load_task(zoo.model_dir(TOY)).dataset(64, seed=0)


def test_the_sink_has_its_own_expert_and_it_writes_the_sinks_top_dims(toy):
    model, data = toy
    routing = probes.routing(model, data, progress=False)
    ranked = probes.super_experts(model, data, progress=False)
    top = ranked.df[ranked.df.metric == "super_expert"].sort_values("rank").iloc[0]
    assert top.massive_share > 0.9  # one expert writes nearly all of its layer's routed output on the dims
    layer, expert = int(top.layer), int(top.expert)
    assert routing.value("routing_entropy", layer=layer, token_class="sink") < \
        0.5 * routing.value("routing_entropy", layer=layer, token_class="other")
    assert ranked.value("routed_share", layer=layer, expert=expert) == 1.0


def test_pruning_the_super_expert_removes_the_sinks_activation_and_weakens_the_sink_unlike_random_ones(toy):
    model, data = toy
    res = prune_test(model, data, n_super=1, draws=5, seed=0)
    frame = res.df
    layer = int(res.provenance["super_experts"][0][1:].split("E")[0])

    def at(condition, metric, where):
        rows = frame[(frame.condition == condition) & (frame.metric == metric) & (frame.layer == where)]
        return rows.iloc[0]

    base, pruned, random = (at(c, "sink_massive", layer) for c in ("baseline", "super", "random"))
    assert pruned.value < 0.5 * base.value and random.ci_low > 0.9 * base.value
    attention = frame[(frame.condition == "baseline") & (frame.metric == "sink_attention")]
    sink_layer = int(attention.sort_values("value").iloc[-1].layer)
    base, pruned, random = (at(c, "sink_attention", sink_layer) for c in ("baseline", "super", "random"))
    assert pruned.value < random.ci_low - 0.05 and base.value > 0.5
    assert torch.isfinite(torch.tensor(frame.value.dropna().to_numpy())).all()
