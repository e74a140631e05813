"""The quantisation family (interventions.quant) and its report (workbench.experiment.quantization), on tiny
random models: the test of record against plain transformers, hand-computed values, keep policies, bad input."""

import math
import sys

import pytest
import torch

import interventions as iv
from interventions.quant import fake_quantize, kv_hooks, quantize_activation_tensor, quantize_kv_tensor
from workbench import experiment, zoo
from workbench.core import data, sites
from workbench.core.errors import InputError
from workbench.experiment import quantization

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def prompts(model, n=6, window=24, seed=0):
    return data.control_prompts(model, "random", window=window, n=n, seed=seed)


def logits_under(model, intervention, tokens, dataset=None):
    with torch.no_grad(), experiment.hooked(model, intervention, tokens, data=dataset):
        return model(tokens)


def captured(model, intervention, tokens, names):
    """The tensors at `names` as the forward pass continues with them (read after the intervention's hooks)."""
    seen = {}

    def grab(name):
        def read(tensor, hook):
            seen[name] = tensor.detach().clone()
        return read

    with torch.no_grad(), experiment.hooked(model, intervention, tokens):
        with model.hooks(fwd_hooks=[(name, grab(name)) for name in names]):
            model(tokens)
    return seen


# --------------------------------------------------------------------------------------------------
# The quantiser, by hand
# --------------------------------------------------------------------------------------------------


def test_fake_quantize_matches_hand_computed_values():
    # 2 bits over [0, 3.1]: scale 3.1 / 3, codes 0 1 2 3
    out = fake_quantize(torch.tensor([[0.0, 1.0, 2.0, 3.1]]), bits=2, dims=-1)
    assert torch.allclose(out, torch.tensor([[0.0, 3.1 / 3, 6.2 / 3, 3.1]]), atol=1e-6)
    # 1 bit over [-1, 1]: scale 2; (x + 1) / 2 = 0, 0.4, 0.8, 1 rounds to 0, 0, 1, 1
    out = fake_quantize(torch.tensor([-1.0, -0.2, 0.6, 1.0]), bits=1, dims=0)
    assert torch.equal(out, torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    # a constant group is returned as is (scale 0)
    assert torch.equal(fake_quantize(torch.full((2, 3), 0.7), bits=3, dims=-1), torch.full((2, 3), 0.7))


def test_per_channel_statistics_leave_the_kept_tokens_out():
    # [batch 1, pos 4, kv 1, d 1]; position 0 is a massive outlier
    x = torch.tensor([100.0, 0.0, 1.2, 3.0]).reshape(1, 4, 1, 1)
    keep = torch.tensor([[True, False, False, False]])
    kept = quantize_kv_tensor(x, bits=2, granularity="per-channel", keep=keep).flatten()
    # the range of positions 1..3 is [0, 3]: scale 1, so 1.2 -> 1; position 0 unchanged
    assert torch.equal(kept, torch.tensor([100.0, 0.0, 1.0, 3.0]))
    # without keep the outlier sets the range [0, 100]: scale 100/3, so 1.2 and 3.0 collapse to 0
    plain = quantize_kv_tensor(x, bits=2, granularity="per-channel").flatten()
    assert torch.allclose(plain, torch.tensor([100.0, 0.0, 0.0, 0.0]))
    # per-tensor activations: the same effect over a whole sequence
    acts = torch.tensor([[[100.0, -100.0], [0.0, 1.0], [1.2, 3.0]]])  # [1, 3, 2]
    out = quantize_activation_tensor(acts, bits=2, granularity="per-tensor", keep=keep[:, :3])
    assert torch.equal(out, torch.tensor([[[100.0, -100.0], [0.0, 1.0], [1.0, 3.0]]]))


def test_per_token_groups_quantise_each_group_of_channels_separately():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]).reshape(1, 1, 1, 8)
    whole = quantize_kv_tensor(x, bits=1).flatten()  # range [0, 13]: everything to 0 or 13
    assert set(whole.tolist()) <= {0.0, 13.0}
    grouped = quantize_kv_tensor(x, bits=1, group=4).flatten()  # ranges [0, 3] and [10, 13]
    assert torch.equal(grouped, torch.tensor([0.0, 0.0, 3.0, 3.0, 10.0, 10.0, 13.0, 13.0]))


# --------------------------------------------------------------------------------------------------
# The measured hook facts and the test of record
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_the_kv_hooks_hold_what_the_hf_cache_holds(name):
    """hook_k is pre-RoPE; hook_rot_k ([b, T, kv, d]) and hook_v equal transformers' DynamicCache bit for bit."""
    model = zoo.load(name)
    hf, _ = zoo.hf_reference(name)
    tokens = prompts(model, n=2, window=12).tensor()
    layers = range(len(model.blocks))
    names = [n for layer in layers for n in (*kv_hooks(model, layer), sites.k(layer))]
    seen = captured(model, "none", tokens, names)
    with torch.no_grad():
        cache = hf(tokens, use_cache=True).past_key_values
    for layer in layers:
        key, value = kv_hooks(model, layer)
        assert key == f"blocks.{layer}.attn.hook_rot_k"
        cached_k, cached_v = cache.layers[layer].keys, cache.layers[layer].values  # [b, kv, T_kept, d]
        kept = cached_k.shape[2]  # Gemma 3's sliding layers keep the last W - 1 positions
        assert torch.equal(seen[key][:, -kept:].transpose(1, 2), cached_k)
        assert torch.equal(seen[value][:, -kept:].transpose(1, 2), cached_v)
        pre_rope = seen[sites.k(layer)]
        assert not torch.allclose(pre_rope[:, 3:], seen[key][:, 3:])  # hook_k is before the rotation


def _direct_quantize(x, bits, keep_first):
    """The test of record written out: x [b, kv, T, d] (HF's layout), per (position, KV head) over d_head,
    scale (max - min) / (2^B - 1), zero point min, round to nearest, dequantised; position 0 kept if asked."""
    low = x.amin(-1, keepdim=True)
    high = x.amax(-1, keepdim=True)
    scale = (high - low) / (2 ** bits - 1)
    out = torch.round((x - low) / scale) * scale + low
    if keep_first:
        out[:, :, 0] = x[:, :, 0]
    return out


@pytest.fixture()
def hf_quantized_attention():
    """A plain transformers model whose eager attention quantises K (after RoPE) and V directly."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    setting = {}

    def attention(module, query, key, value, attention_mask, **kwargs):
        eager = sys.modules[type(module).__module__].eager_attention_forward
        key = _direct_quantize(key, setting["bits"], setting["keep_first"])
        value = _direct_quantize(value, setting["bits"], setting["keep_first"])
        return eager(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("sinkbench_test_quantized", attention)
    AttentionMaskInterface.register("sinkbench_test_quantized", eager_mask)  # else no causal mask reaches it

    def load(name, bits, keep_first):
        setting.update(bits=bits, keep_first=keep_first)
        hf, _ = zoo.hf_reference(name)
        hf.set_attn_implementation("sinkbench_test_quantized")
        return hf
    return load


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
@pytest.mark.parametrize("bits, keep", [(2, "none"), (4, "none"), (3, "bos"), (8, "bos")])
def test_of_record_quantize_kv_matches_a_direct_implementation(name, bits, keep, hf_quantized_attention):
    model = zoo.load(name)
    tokens = prompts(model, n=3, window=16).tensor()
    spec = f"quantize-kv:bits={bits},granularity=per-token,group=d_head,keep={keep}"
    ours = logits_under(model, spec, tokens)
    hf = hf_quantized_attention(name, bits, keep == "bos")
    with torch.no_grad():
        direct = hf(tokens).logits
        plain = zoo.hf_reference(name)[0](tokens).logits
    assert not torch.allclose(ours, plain, atol=1e-4)  # the quantisation does something
    assert torch.equal(ours, direct), (ours - direct).abs().max()  # same float32 ops: bit for bit


def test_the_quantised_keys_are_the_hand_computed_ones(tiny_llama):
    tokens = prompts(tiny_llama, n=1, window=10).tensor()
    key, value = kv_hooks(tiny_llama, 0)
    original = captured(tiny_llama, "none", tokens, [key])[key]
    edited = captured(tiny_llama, "quantize-kv:bits=3", tokens, [key])[key]
    channels = original[0, 4, 1].tolist()  # position 4, KV head 1: 16 numbers
    low, high = min(channels), max(channels)
    scale = (high - low) / 7
    by_hand = [round((c - low) / scale) * scale + low for c in channels]
    assert edited[0, 4, 1].tolist() == pytest.approx(by_hand, abs=1e-6)
    assert len(set(edited[0, 4, 1].tolist())) <= 8  # at most 2^3 levels


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_keep_bos_leaves_position_zero_bit_identical(name):
    model = zoo.load(name)
    tokens = prompts(model, n=3, window=16).tensor()
    names = [n for layer in range(len(model.blocks)) for n in kv_hooks(model, layer)]
    original = captured(model, "none", tokens, names)
    kept = captured(model, "quantize-kv:bits=2,keep=bos", tokens, names)
    for name_ in original:
        assert torch.equal(kept[name_][:, 0], original[name_][:, 0])
        assert not torch.equal(kept[name_][:, 1:], original[name_][:, 1:])
    # position 0 only ever sees its own (kept) keys and values, so its logits are untouched
    with torch.no_grad():
        base = model(tokens)
    assert torch.equal(logits_under(model, "quantize-kv:bits=2,keep=bos", tokens)[:, 0], base[:, 0])
    assert not torch.equal(logits_under(model, "quantize-kv:bits=2", tokens)[:, 0], base[:, 0])


def test_keys_and_values_are_chosen_separately(tiny_llama):
    tokens = prompts(tiny_llama, n=2, window=12).tensor()
    key, value = kv_hooks(tiny_llama, 1)
    original = captured(tiny_llama, "none", tokens, [key, value])
    only_values = captured(tiny_llama, "quantize-kv:bits=2,keys=false", tokens, [key, value])
    only_keys = captured(tiny_llama, "quantize-kv:bits=2,values=false", tokens, [key, value])
    assert not torch.equal(only_values[value], original[value]) and not torch.equal(only_keys[key], original[key])
    # layer 1's keys depend on layer 0's (quantised) values, so compare the layer-0 hooks for exactness
    key0, value0 = kv_hooks(tiny_llama, 0)
    assert torch.equal(captured(tiny_llama, "quantize-kv:bits=2,keys=false", tokens, [key0])[key0],
                       captured(tiny_llama, "none", tokens, [key0])[key0])


def test_quantize_activations_matches_hooks_on_the_plain_linear_layers(tiny_llama):
    """Linear-layer inputs quantised per token (and per tensor, BOS kept) with forward pre-hooks on HF's nn.Linear."""
    tokens = prompts(tiny_llama, n=3, window=16).tensor()
    hf, _ = zoo.hf_reference("tiny-llama")
    for granularity, keep in (("per-token", "none"), ("per-tensor", "bos")):
        def pre_hook(module, args, granularity=granularity, keep=keep):
            x = args[0]
            mask = torch.zeros(x.shape[:2], dtype=torch.bool)
            if keep == "bos":
                mask[:, 0] = True
            return (quantize_activation_tensor(x, 4, granularity, mask),)

        handles = [m.register_forward_pre_hook(pre_hook) for name, m in hf.model.layers.named_modules()
                   if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            direct = hf(tokens).logits
        for handle in handles:
            handle.remove()
        ours = logits_under(tiny_llama, f"quantize-activations:bits=4,granularity={granularity},keep={keep}", tokens)
        assert torch.allclose(ours, direct, atol=2e-5), (granularity, (ours - direct).abs().max())


def test_quantize_weights_matches_rounded_weights_in_the_plain_model(tiny_llama):
    tokens = prompts(tiny_llama, n=2, window=12).tensor()
    hf, _ = zoo.hf_reference("tiny-llama")
    with torch.no_grad():
        for module in hf.model.layers.modules():
            if isinstance(module, torch.nn.Linear):
                w = module.weight
                module.weight.copy_(fake_quantize(w.reshape(w.shape[0], -1, 16), 3, -1).reshape(w.shape))
        direct = hf(tokens).logits
    ours = logits_under(tiny_llama, "quantize-weights:bits=3,group=16", tokens)
    assert torch.allclose(ours, direct, atol=2e-5), (ours - direct).abs().max()
    # W + A composes in either order
    a = logits_under(tiny_llama, "quantize-weights:bits=3 + quantize-activations:bits=4", tokens)
    b = logits_under(tiny_llama, "quantize-activations:bits=4 + quantize-weights:bits=3", tokens)
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, logits_under(tiny_llama, "quantize-weights:bits=3",
                                                                                  tokens), atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Through the runner
# --------------------------------------------------------------------------------------------------


def test_sixteen_bits_is_nearly_the_identity(tiny_llama):
    ds = prompts(tiny_llama)
    names = ["quantize-kv:bits=16", "quantize-activations:bits=16,granularity=per-tensor", "quantize-weights:bits=16"]
    res = experiment.run(tiny_llama, ds, names, progress=False)
    for name in names:
        key = str(iv.parse(name))
        assert abs(res.value("delta_loss", intervention=key)) < 1e-4
        assert res.value("kl", intervention=key) < 1e-5


def test_more_bits_never_hurt_more_on_average(tiny_llama):
    """KL to the baseline falls with every added bit (averaged over sequences and positions). delta_loss is not
    monotone on a random model: its predictions are near uniform, so noise moves the loss either way."""
    ds = prompts(tiny_llama, n=8)
    for family in ("quantize-kv:granularity=per-token", "quantize-kv:granularity=kivi",
                   "quantize-activations:granularity=per-tensor", "quantize-activations:granularity=per-token"):
        specs = [f"{family},bits={bits}" for bits in (2, 3, 4, 8)]
        res = experiment.run(tiny_llama, ds, specs, progress=False)
        kl = [res.value("kl", intervention=str(iv.parse(s))) for s in specs]
        assert kl == sorted(kl, reverse=True), (family, kl)


def test_results_do_not_depend_on_stacking_and_specs_round_trip(tiny_llama):
    ds = prompts(tiny_llama, n=4)
    names = ["quantize-kv:bits=2,keep=first:3", "quantize-activations:bits=3,granularity=per-tensor,keep=bos",
             "quantize-weights:bits=3 + quantize-kv:bits=4,granularity=per-channel,group=5"]
    stacked = experiment.run(tiny_llama, ds, names, progress=False, rows_per_forward=64)
    alone = experiment.run(tiny_llama, ds, names, progress=False, rows_per_forward=1)
    for name in names:
        key = str(iv.parse(name))
        assert stacked.value("loss", intervention=key) == pytest.approx(alone.value("loss", intervention=key), abs=1e-6)
        rebuilt = iv.from_spec(iv.parse(name).spec())
        assert rebuilt.spec() == iv.parse(name).spec()
    assert {"quantize-kv", "quantize-activations", "quantize-weights"} <= set(iv.catalogue())


def test_a_layer_sweep_scopes_the_quantisation(tiny_llama):
    ds = prompts(tiny_llama, n=4)
    res = experiment.sweep(tiny_llama, ds, "quantize-kv:bits=2", over="layer", progress=False)
    assert sorted(r["layer"] for r in res.filter(metric="kl")) == [0, 1]


def test_keep_sinks_detects_them_from_attention_and_records_them(tiny_llama):
    ds = prompts(tiny_llama, n=4)
    res = experiment.run(tiny_llama, ds, ["quantize-kv:bits=2,keep=auto:0.1"], progress=False)
    prepared = res.provenance["prepared"]["quantize-kv(bits=2, keep='auto:0.1')"]
    assert 0 in prepared["keep_positions"]
    with pytest.raises(InputError, match="keep='sinks'.*lower eps"):  # a random model has no 0.3 sink
        experiment.run(tiny_llama, ds, ["quantize-kv:bits=2,keep=sinks"], progress=False)


# --------------------------------------------------------------------------------------------------
# The report: D_sink, destroyed, averages
# --------------------------------------------------------------------------------------------------


def test_report_d_sink_is_the_paired_difference_of_delta_losses(tiny_llama):
    ds = prompts(tiny_llama, n=6)
    res = quantization.report(tiny_llama, ds, quantization.kv_grid(bits=(2, 4), keep=("bos",)), progress=False)
    for bits in (2, 4):
        kept = str(iv.get("quantize-kv", bits=bits, keep="bos", granularity="per-token"))
        nothing = str(iv.get("quantize-kv", bits=bits, granularity="per-token"))
        d_sink = res.filter(metric="d_sink", intervention=kept).rows[0]
        expected = res.value("delta_loss", intervention=nothing) - res.value("delta_loss", intervention=kept)
        assert d_sink["value"] == pytest.approx(expected, abs=1e-6)
        assert d_sink["reference"] == nothing and d_sink["ci_low"] <= d_sink["value"] <= d_sink["ci_high"]
        assert d_sink["n_sequences"] == 6 and d_sink["keep"] == "bos" and d_sink["bits"] == bits
    assert res.provenance["baseline_perplexity"] == pytest.approx(res.value("perplexity", intervention="none"))


def test_report_flags_destroyed_configurations_and_averages_leave_them_out(tiny_llama):
    ds = prompts(tiny_llama, n=4)
    configs = ["quantize-kv:bits=1", "quantize-kv:bits=8"]
    res = quantization.report(tiny_llama, ds, configs, progress=False, destroyed_factor=1.0005)
    flags = {r["intervention"]: r["destroyed"] for r in res.filter(metric="perplexity")}
    ratio = {r["intervention"]: r["value"] / res.value("perplexity", intervention="none")
             for r in res.filter(metric="perplexity")}
    assert all(flags[k] == (ratio[k] > 1.0005) for k in flags)
    assert flags["quantize-kv(bits=1)"] and not flags["quantize-kv(bits=8)"]
    average = quantization.averages(res, by=("family",)).filter(metric="kl").rows[0]
    assert average["n_configurations"] == 1 and average["n_destroyed"] == 1
    assert average["value"] == pytest.approx(res.value("kl", intervention="quantize-kv(bits=8)"))


def test_sequence_losses_agree_with_the_runner(tiny_llama):
    ds = prompts(tiny_llama, n=5)
    intervention = iv.parse("quantize-activations:bits=3,granularity=per-tensor,keep=bos")
    res = experiment.run(tiny_llama, ds, [intervention], progress=False)
    stats = quantization.sequence_losses(tiny_llama, ds, intervention, batch_size=2)
    assert stats.mean() == pytest.approx(res.value("loss", intervention=str(intervention)), abs=1e-6)


# --------------------------------------------------------------------------------------------------
# Bad input: one clear error each, before any forward pass
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ("quantize-kv:bits=0", r"bits = 0 is out of range: allowed 1\.\.16"),
    ("quantize-kv:bits=17", r"bits = 17 is out of range: allowed 1\.\.16"),
    ("quantize-kv:bits=4.5", r"bits must be an integer in 1\.\.16, got '4\.5'"),
    ("quantize-activations:bits=-2", r"bits = -2 is out of range: allowed 1\.\.16"),
    ("quantize-weights:bits=32", r"bits = 32 is out of range: allowed 1\.\.16"),
    ("quantize-kv:bits=4,group=5", r"group = 5 does not divide d_head = 16 .*divisor of 16"),
    ("quantize-weights:bits=4,group=5", r"group = 5 does not divide the input width 64"),
    ("quantize-kv:bits=4,granularity=per-head", r"granularity='per-head': use one of per-token, per-channel, kivi"),
    ("quantize-activations:site=mlp", r"site='mlp': use one of linear, residual"),
    ("quantize-kv:keys=false,values=false", r"quantise nothing"),
    ("quantize-kv:keep=first:0", r"first:N needs a whole number of tokens N >= 1"),
    ("quantize-kv:keep=middle", r"cannot read keep='middle': use none, bos, first:N, sinks"),
    ("quantize-kv:keep=tok:hello", r"keep='tok:hello'.*not a single token"),
    ("quantize-kv:keep=cls", r"keep='cls'.*encoder token"),
    ("quantize-weights:keep=bos", r"keep='bos': weights belong to no token"),
])
def test_bad_input_is_one_clear_error_in_validate(tiny_llama, spec, message):
    with pytest.raises(InputError, match=message):
        iv.parse(spec).validate(tiny_llama)


def test_bits_given_in_python_are_checked_too(tiny_llama):
    for bits, message in ((4.0, "must be an integer in 1..16, got 4.0"), (True, "got True"), (None, "got None")):
        with pytest.raises(InputError, match=message):
            iv.get("quantize-kv", bits=bits).validate(tiny_llama)


def test_keep_on_a_model_without_a_kv_cache_path_is_refused(tiny_bert):
    for spec in ("quantize-kv:bits=4,keep=bos", "quantize-kv:bits=4"):
        with pytest.raises(InputError, match="bidirectional encoder with no KV cache path.*quantize-activations"):
            iv.parse(spec).validate(tiny_bert)
    iv.parse("quantize-activations:bits=8,keep=cls").validate(tiny_bert)  # activations are fine on an encoder


def test_a_keep_policy_naming_absent_tokens_fails_before_any_forward_pass(tiny_llama, monkeypatch):
    ds = prompts(tiny_llama, n=4, window=12)
    absent = next(chr(c) for c in range(ord("A"), ord("z")) if
                  tiny_llama.sinkbench.tokenizer(chr(c), add_special_tokens=False)["input_ids"][0]
                  not in ds.tensor().flatten().tolist())
    for spec, message in ((f"quantize-kv:bits=4,keep=tok:{absent}", "do not occur"),
                          ("quantize-activations:bits=4,keep=first:40", "outside the sequence: allowed 0..11")):
        iv.parse(spec).validate(tiny_llama)  # the vocabulary has the token; only the data lacks it
        calls = []
        monkeypatch.setattr(tiny_llama, "forward", lambda *a, calls=calls, **k: calls.append(1))
        tiny_llama(ds.tensor())
        assert calls == [1]  # the patch sees forward passes
        calls.clear()
        with pytest.raises(InputError, match=message):
            experiment.run(tiny_llama, ds, [spec], progress=False)
        with pytest.raises(InputError, match=message):
            quantization.report(tiny_llama, ds, [spec], progress=False)
        monkeypatch.undo()
        assert not calls


def test_report_refuses_an_encoder_and_a_bad_factor(tiny_bert, tiny_llama):
    with pytest.raises(InputError, match="not a causal LM"):
        quantization.report(tiny_bert, prompts(tiny_bert), ["quantize-activations:bits=8"], progress=False)
    with pytest.raises(InputError, match="destroyed_factor must be a number > 1"):
        quantization.report(tiny_llama, prompts(tiny_llama), ["quantize-kv:bits=8"], destroyed_factor=0.5)
    assert math.isfinite(quantization.report(tiny_llama, prompts(tiny_llama, n=2), ["quantize-kv:bits=8"],
                                             progress=False).value("kl", intervention="quantize-kv(bits=8)"))


@pytest.mark.parametrize("positional, key", [("rotary", "hook_rot_k"), ("absolute", "hook_k")])
def test_the_toy_models_have_a_kv_path_too(positional, key):
    from workbench.core.modelinfo import ModelInfo
    from workbench.toy.model import ToyConfig, ToyTransformer

    torch.manual_seed(0)
    model = ToyTransformer(ToyConfig(d_vocab=20, n_ctx=16, d_model=32, n_layers=2, n_heads=2,
                                     positional=positional)).eval()
    model.sinkbench = ModelInfo(name=f"toy-{positional}", family="causal-lm", n_layers=2, n_heads=2, n_kv_heads=2,
                                d_head=16, d_model=32, n_ctx=16, vocab_size=20, bos_token_id=1, eos_token_id=None,
                                cls_token_id=None, sep_token_id=None, positional=positional, layer_types=None,
                                sliding_window=None, weights_sha256=None, source="test")
    assert kv_hooks(model, 1) == (f"blocks.1.attn.{key}", "blocks.1.attn.hook_v")
    tokens = torch.randint(2, 20, (2, 12))
    with torch.no_grad():
        base = model(tokens)
    kept = logits_under(model, "quantize-kv:bits=2,keep=bos", tokens)
    assert torch.equal(kept[:, 0], base[:, 0]) and not torch.equal(kept, base)
    with pytest.raises(InputError, match="no linear-layer input hooks.*site=residual"):
        iv.parse("quantize-activations:bits=4").validate(model)
    assert not torch.equal(logits_under(model, "quantize-activations:bits=2,site=residual", tokens), base)
