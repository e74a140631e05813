"""Mixture-of-Experts models: tiny OLMoE / Mixtral / Qwen2-MoE through the real TransformerLens adapters, the MoE
toy, the `routing` / `super-experts` probes and the `prune-expert` / `reroute-sink` interventions (issue 19)."""

import copy
import math

import pytest
import torch

import interventions as iv
from tests.unit.test_toy import corpus  # noqa: F401  (the fixture: a private shakespeare corpus)
from workbench import experiment, probes, zoo
from workbench.core import data as wdata
from workbench.core import sites
from workbench.core.errors import InputError
from workbench.experiment import hooked
from workbench.probes.routing import expert_outputs
from workbench.toy import ToyConfig, ToyTransformer, load_toy, preset, train
from workbench.toy.checkpoint import describe_toy
from workbench.toy.tasks import BOS_ID, VOCAB_SIZE, tokenizer

MOE = ["tiny-olmoe", "tiny-mixtral", "tiny-qwen2-moe"]
SHAPES = {"tiny-olmoe": (8, 2), "tiny-mixtral": (4, 2), "tiny-qwen2-moe": (8, 2)}
TOKENS = torch.tensor([[1, 40, 50, 60, 70, 80, 90, 100, 33, 44, 55, 66]])


def text_data(model):
    text = "Summer is warm. Winter is cold. The cat sat on the mat, then slept by the door all day long. " * 2
    return wdata.from_text(model, text, window=16)


def capture(model, names, tokens=TOKENS):
    seen = {}

    def grab(tensor, hook):
        seen[hook.name] = tensor.detach().clone()

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, grab) for name in names]):
        logits = model(tokens)
    return logits, seen


@pytest.fixture(scope="module", params=MOE)
def moe(request):
    return zoo.load(request.param)


# --------------------------------------------------------------------------------------------------
# The zoo: the real adapters, exactly
# --------------------------------------------------------------------------------------------------


def test_tiny_moe_bridges_match_their_hf_models_and_know_their_experts(moe):
    model_info = zoo.info(moe)
    assert (model_info.n_experts, model_info.top_k) == SHAPES[model_info.name] and model_info.is_moe
    assert model_info.provenance()["n_experts"] == model_info.n_experts
    hf, _ = zoo.hf_reference(model_info.name)
    with torch.no_grad():
        assert (moe(TOKENS) - hf(TOKENS).logits).abs().max() < 1e-4
    for layer in range(model_info.n_layers):
        for name in (sites.moe_in(layer), sites.moe_out(layer), sites.router_logits(layer),
                     sites.expert_weights(layer), sites.expert_indices(layer)):
            assert name in moe.hook_dict


def test_dense_models_have_no_experts(tiny_llama):
    assert not zoo.info(tiny_llama).is_moe and zoo.info(tiny_llama).n_experts == 0


def test_each_experts_output_rebuilds_the_moe_block_output(moe):
    """sum_e g_e o_e (+ Qwen2-MoE's gated shared expert) == the block's output, from the model's own weights."""
    layer = 1
    names = [sites.moe_in(layer), sites.expert_weights(layer), sites.moe_out(layer)]
    _, seen = capture(moe, names)
    x = seen[sites.moe_in(layer)][0]
    gates = next(v for k, v in seen.items() if k.endswith("hook_expert_weights"))
    assert gates.shape == (TOKENS.shape[1], zoo.info(moe).n_experts)
    assert ((gates > 0).sum(-1) == zoo.info(moe).top_k).all()
    rebuilt = (gates[..., None] * expert_outputs(moe, layer, x)).sum(1)
    block = moe.blocks[layer].mlp.original_component
    if hasattr(block, "shared_expert"):
        rebuilt = rebuilt + torch.sigmoid(block.shared_expert_gate(x)) * block.shared_expert(x)
    assert (rebuilt - seen[sites.moe_out(layer)][0]).abs().max() < 1e-5


def test_router_logit_edits_do_not_flow_but_gate_edits_do(moe):
    """The adapter fact the GateEdit mechanism is built on (docs/ARCHITECTURE.md)."""
    with torch.no_grad():
        base = moe(TOKENS)
        with moe.hooks(fwd_hooks=[(sites.router_logits(0), lambda t, hook: torch.zeros_like(t))]):
            assert torch.equal(moe(TOKENS), base)
        with moe.hooks(fwd_hooks=[(sites.expert_weights(0), lambda t, hook: t * 0.5)]):
            assert not torch.allclose(moe(TOKENS), base)


# --------------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------------


def test_routing_probe_matches_the_hf_router_and_its_loads_sum_to_one():
    model = zoo.load("tiny-olmoe")
    data = text_data(model)
    res = probes.by_name("routing", model, data, progress=False)
    frame = res.df
    load = frame[frame.metric == "expert_load"].groupby(["layer", "token_class"]).value.sum()
    assert load.sub(1).abs().max() < 1e-9
    # the sink entropy from plain transformers' router logits (OLMoE records them), BOS at position 0
    hf, _ = zoo.hf_reference("tiny-olmoe")
    with torch.no_grad():
        logits = hf(data.tensor(), output_router_logits=True).router_logits  # per layer [b * T, E]
    T = data.tensor().shape[1]
    for layer in range(2):
        probs = logits[layer].float().softmax(-1).reshape(-1, T, 8)
        entropy = -(probs * probs.log()).sum(-1)
        got = res.value("routing_entropy", layer=layer, token_class="sink")
        assert got == pytest.approx(float(entropy[:, 0].mean()), abs=1e-5)
        assert got <= math.log(8) + 1e-9
        top = frame[(frame.metric == "sink_top_expert") & (frame.layer == layer)].iloc[0]
        assert int(top.expert) in probs[:, 0].topk(2).indices.flatten().tolist()
    assert "entropy sink / other" in probes.PROBES["routing"].summarize(res)


def test_super_experts_rank_what_each_expert_writes_on_the_sink(moe):
    data = text_data(moe)
    res = probes.by_name("super-experts", moe, data, progress=False)
    frame = res.df
    n_experts = zoo.info(moe).n_experts
    for layer in range(2):
        at = frame[frame.layer == layer]
        share = at[at.metric == "massive_share"].value
        assert share.sum() == pytest.approx(1.0) and len(share) == n_experts
        routed = at[at.metric == "routed_share"].set_index("expert").value
        written = at[at.metric == "output_norm"].set_index("expert").value
        assert (written[routed == 0] == 0).all() and (written[routed > 0] > 0).all()
        assert sorted(at[at.metric == "rank"].value) == list(range(1, n_experts + 1))
    top = frame[frame.metric == "super_expert"].sort_values("rank")
    assert list(top["value"]) == sorted(top["value"], reverse=True)
    assert len(res.provenance["dims"]) == 2
    given = probes.super_experts(moe, data, dims=[3, 5], progress=False)
    assert given.provenance["dims"] == [3, 5]


def test_moe_probes_refuse_a_dense_model(tiny_llama):
    data = text_data(tiny_llama)
    for name in ("routing", "super-experts"):
        with pytest.raises(InputError, match=f"{name} needs an MoE model; tiny-llama has no experts"):
            probes.by_name(name, tiny_llama, data, progress=False)


# --------------------------------------------------------------------------------------------------
# Interventions
# --------------------------------------------------------------------------------------------------


def _used(model, layer, tokens=TOKENS):
    _, seen = capture(model, [sites.expert_indices(layer)], tokens)
    return set(next(iter(seen.values())).flatten().tolist())


def test_pruning_an_expert_that_is_never_selected_reproduces_the_baseline_exactly():
    model = zoo.load("tiny-olmoe")
    unused = sorted(set(range(8)) - _used(model, 1))
    assert unused, "tiny-olmoe routes this input to every expert of layer 1"
    with torch.no_grad():
        base = model(TOKENS)
        for mode in ("renorm", "zero"):
            with hooked(model, f"prune-expert:layers=1,experts={unused[0]},mode={mode}", TOKENS):
                assert torch.equal(model(TOKENS), base)
            with hooked(model, f"prune-expert:layers=1,experts=0,mode={mode}", TOKENS):
                assert not torch.allclose(model(TOKENS), base)


def test_renorm_pruning_on_mixtral_is_the_model_rebuilt_without_the_expert():
    """Mixtral renormalises its top-k gates, so dropping expert e and re-selecting = a Mixtral with 3 experts."""
    from transformers import MixtralForCausalLM

    model = zoo.load("tiny-mixtral")
    hf, _ = zoo.hf_reference("tiny-mixtral")
    for expert in (1, 3):
        config = copy.deepcopy(hf.config)
        config.num_local_experts = 3
        smaller = MixtralForCausalLM(config).eval()
        keep = [e for e in range(4) if e != expert]
        smaller.load_state_dict({k: v[keep] if k.endswith(("mlp.gate.weight", "gate_up_proj", "down_proj")) else v
                                 for k, v in hf.state_dict().items()})
        with torch.no_grad(), hooked(model, f"prune-expert:experts={expert}", TOKENS):
            edited = model(TOKENS)
        with torch.no_grad():
            reference = smaller(TOKENS).logits
            assert (edited - reference).abs().max() < 1e-5
            assert (hf(TOKENS).logits - reference).abs().max() > 1e-3  # the expert mattered


def test_zero_pruning_is_the_model_with_the_experts_down_projection_zeroed():
    model = zoo.load("tiny-olmoe")
    hf, _ = zoo.hf_reference("tiny-olmoe")
    with torch.no_grad():
        hf.model.layers[0].mlp.experts.down_proj[5].zero_()
        reference = hf(TOKENS).logits
        with hooked(model, "prune-expert:layers=0,experts=5,mode=zero", TOKENS):
            assert (model(TOKENS) - reference).abs().max() < 1e-5


def test_reroute_sink_sends_only_the_sink_elsewhere():
    model = zoo.load("tiny-qwen2-moe")
    T = TOKENS.shape[1]
    _, before = capture(model, [sites.expert_indices(0)])
    chosen = {frozenset(row.tolist()) for row in next(iter(before.values()))}
    with torch.no_grad():
        base = model(TOKENS)
        with hooked(model, "reroute-sink:layers=0", TOKENS):
            _, after = capture(model, [sites.expert_indices(0)])
            edited = model(TOKENS)
    old, new = next(iter(before.values())), next(iter(after.values()))
    assert not set(old[0].tolist()) & set(new[0].tolist())  # the sink (BOS, row 0) has all new experts
    assert all(set(old[t].tolist()) == set(new[t].tolist()) for t in range(1, T))  # nobody else moved
    assert not torch.allclose(edited[0, 0], base[0, 0]) and len(chosen) > 1
    with torch.no_grad(), hooked(model, "reroute-sink:layers=1,experts=6", TOKENS):
        _, given = capture(model, [sites.expert_indices(1)])
    assert 6 in next(iter(given.values()))[0].tolist()


@pytest.mark.parametrize("spec, message", [
    ("prune-expert:layers=1,experts=8", "expert 8 is out of range for tiny-olmoe: allowed 0..7"),
    ("prune-expert:layers=1,experts=all", "prunes all 8 experts of the layer"),
    ("prune-expert:layers=1,experts=0-7", "prunes all 8 experts of the layer"),
    ("prune-expert:layers=1", "give experts="),
    ("prune-expert:experts=1,mode=drop", "mode 'drop': use one of renorm, zero"),
    ("prune-expert:layers=2,experts=1", "layer 2 is out of range for tiny-olmoe: allowed 0..1"),
    ("reroute-sink:experts=1,2,3", "names 3 experts; a token is routed to top_k = 2"),
])
def test_bad_expert_input_is_one_clear_error(spec, message):
    model = zoo.load("tiny-olmoe")
    with pytest.raises(InputError, match=message):
        with hooked(model, spec, TOKENS):
            pass


def test_expert_interventions_refuse_a_dense_model(tiny_llama):
    with pytest.raises(InputError, match="prune-expert needs an MoE model; tiny-llama has no experts"):
        iv.parse("prune-expert:experts=0").validate(tiny_llama)


def test_a_probe_measures_the_pruned_model_through_batch_hooks():
    from workbench.experiment import batch_hooks

    model = zoo.load("tiny-olmoe")
    data = text_data(model)
    hooks, spec = batch_hooks(model, "prune-expert:layers=0,experts=0", data)
    base = probes.routing(model, data, progress=False)
    pruned = probes.routing(model, data, progress=False, hooks=hooks)
    assert pruned.value("expert_load", layer=0, expert=0, token_class="other") == 0.0
    assert base.value("expert_load", layer=0, expert=0, token_class="other") > 0.0
    assert spec["name"] == "prune-expert"


# --------------------------------------------------------------------------------------------------
# The MoE toy
# --------------------------------------------------------------------------------------------------


def toy(seed=0, **kw):
    torch.manual_seed(seed)
    model = ToyTransformer(ToyConfig(d_vocab=VOCAB_SIZE, n_ctx=16, d_model=16, n_layers=2, n_heads=2, d_mlp=8,
                                     n_experts=4, top_k=2, **kw)).eval()
    model.sinkbench = describe_toy(model.cfg, "toy:untrained", tokenizer())
    return model


def toy_tokens(batch=3, T=12):
    out = torch.randint(0, 60, (batch, T), generator=torch.Generator().manual_seed(0))
    out[:, 0] = BOS_ID
    return out


def test_the_moe_toy_fires_transformer_lens_moe_hooks_and_rebuilds_its_output():
    model, tokens = toy(), toy_tokens()
    names = [sites.moe_in(1), sites.router_logits(1), sites.expert_weights(1), sites.expert_indices(1),
             "blocks.1.mlp.hook_expert_out", sites.moe_out(1)]
    _, seen = capture(model, names, tokens)
    N = tokens.numel()
    assert seen[sites.router_logits(1)].shape == (N, 4) and seen[sites.expert_indices(1)].shape == (N, 2)
    assert seen["blocks.1.mlp.hook_expert_out"].shape == (N, 4, 16)
    x = seen[sites.moe_in(1)].reshape(N, 16)
    outputs = expert_outputs(model, 1, x)
    assert torch.allclose(outputs, seen["blocks.1.mlp.hook_expert_out"], atol=1e-6)
    rebuilt = (seen[sites.expert_weights(1)][..., None] * outputs).sum(1)
    assert torch.allclose(rebuilt, seen[sites.moe_out(1)].reshape(N, 16), atol=1e-6)
    assert model.blocks[1].mlp.aux_loss is not None and model.blocks[1].mlp.aux_loss > 0


def test_a_dense_toy_keeps_its_config_identity_and_bad_moe_settings_are_refused():
    assert "n_experts" not in ToyConfig(d_vocab=VOCAB_SIZE).to_dict()
    assert ToyConfig(d_vocab=VOCAB_SIZE, n_experts=4).to_dict()["top_k"] == 2
    with pytest.raises(InputError, match="top_k = 5 is out of range for 4 experts: allowed 1..4"):
        ToyConfig(d_vocab=VOCAB_SIZE, n_experts=4, top_k=5)
    with pytest.raises(InputError, match="n_experts must be a non-negative integer"):
        ToyConfig(d_vocab=VOCAB_SIZE, n_experts=-1)


def test_expert_interventions_run_on_the_toy_and_match_its_own_hooks():
    model, tokens = toy(), toy_tokens()
    with torch.no_grad():
        base = model(tokens)

        def zero_expert(tensor, hook):  # what mode=zero means, written on the toy's own per-expert hook
            tensor = tensor.clone()
            tensor[:, 2] = 0
            return tensor

        with model.hooks(fwd_hooks=[("blocks.0.mlp.hook_expert_out", zero_expert)]):
            reference = model(tokens)
        with hooked(model, "prune-expert:layers=0,experts=2,mode=zero", tokens):
            assert torch.allclose(model(tokens), reference, atol=1e-6)
        with hooked(model, "reroute-sink:layers=0-1", tokens):
            edited = model(tokens)
    assert not torch.allclose(edited[:, 0], base[:, 0])


def test_moe_toys_train_deterministically_resume_and_load_with_their_experts(corpus, tmp_path):  # noqa: F811
    quiet = {"progress": False, "log": lambda _: None}
    train(tmp_path / "a", *preset("moe-tiny"), **quiet)
    train(tmp_path / "b", *preset("moe-tiny", steps=10), **quiet)
    train(tmp_path / "b", *preset("moe-tiny"), resume=True, **quiet)
    a, b = load_toy(tmp_path / "a"), load_toy(tmp_path / "b")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert (a.sinkbench.n_experts, a.sinkbench.top_k) == (4, 2)
    train(tmp_path / "c", *preset("moe-tiny", router_aux_coef=0.0), **quiet)  # the load-balancing loss matters
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), load_toy(tmp_path / "c").parameters()))


# --------------------------------------------------------------------------------------------------
# The causal test and its figure (on a tiny model: the trained toy's numbers are tests/integration/test_moe.py's)
# --------------------------------------------------------------------------------------------------


def test_prune_test_compares_the_super_expert_with_random_draws_and_plots_them():
    from workbench.gallery.recipes_moe import prune_test
    from workbench.plots.moe import super_expert_pruning

    model = zoo.load("tiny-olmoe")
    data = text_data(model)
    res = prune_test(model, data, n_super=1, draws=3, seed=0)
    frame = res.df
    assert set(frame.condition) == {"baseline", "super", "random_draw", "random"}
    assert len(frame[(frame.condition == "random_draw") & (frame.metric == "loss")]) == 3
    assert res.provenance["super_experts"][0] not in {p for s in res.provenance["random_sets"] for p in s}
    random = frame[(frame.condition == "random") & (frame.metric == "loss")].iloc[0]
    draws = frame[(frame.condition == "random_draw") & (frame.metric == "loss")].value
    assert random.value == pytest.approx(draws.mean()) and random.ci_low <= random.value <= random.ci_high
    base = frame[(frame.condition == "baseline") & (frame.metric == "loss")].value.iloc[0]
    assert base == pytest.approx(experiment.evaluate(model, data, progress=False).value("loss"), abs=1e-6)
    fig, plotted = super_expert_pruning(res)
    assert set(plotted.condition) == {"baseline", "super", "random", "random_draw"}
    with pytest.raises(InputError, match="prune_test needs an MoE model"):
        prune_test(zoo.load("tiny-llama"), text_data(zoo.load("tiny-llama")))
    with pytest.raises(InputError, match="n_super"):
        prune_test(model, data, n_super=16)
