"""Probes on tiny random models: agreement with plain transformers, planted sinks, bad input."""

import numpy as np
import pytest
import torch

from workbench import probes, zoo
from workbench.core import data, sites
from workbench.core.errors import InputError


def batch_of(model, n=4, window=24, seed=0, prepend_bos=True):
    return data.control_prompts(model, "random", window=window, n=n, seed=seed, prepend_bos=prepend_bos)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3", "tiny-bert"])
def test_first_token_attention_agrees_with_hf_eager(name):
    model = zoo.load(name)
    ds = batch_of(model)
    res = probes.sinks(model, ds, progress=False)
    hf, _ = zoo.hf_reference(name)
    with torch.no_grad():
        attentions = hf(ds.tensor(), output_attentions=True).attentions
    for layer, pattern in enumerate(attentions):
        expected = pattern[:, :, 1:, 0].mean(dim=(0, 2))  # queries q >= 1 (encoders: every non-[CLS] query)
        for head in range(pattern.shape[1]):
            assert res.value("first_token_attention", layer=layer, head=head) == pytest.approx(
                expected[head].item(), abs=1e-6)


def plant(model, layer, fn):
    """A hook that rewrites one layer's pattern before the probe reads it."""
    return model.hooks(fwd_hooks=[(sites.pattern(layer), lambda t, hook: fn(t.clone()))])


def all_on_first(pattern):
    pattern[:] = 0
    pattern[..., 0] = 1
    return pattern


def test_sink_ratio_counts_heads_above_eps(tiny_llama):
    ds = batch_of(tiny_llama)
    with plant(tiny_llama, 1, all_on_first):
        res = probes.sinks(tiny_llama, ds, eps=[0.3, 0.99], progress=False)
    assert res.value("first_token_attention", layer=1, head=2) == pytest.approx(1.0)
    scores = np.array([res.value("first_token_attention", layer=layer, head=h) for layer in (0, 1) for h in range(4)])
    for eps in (0.3, 0.99):
        assert res.value("sink_ratio", eps=eps, layer=None) == pytest.approx((scores > eps).mean())
        assert res.value("sink_ratio", eps=eps, layer=1) == 1.0
    assert res.value("last_token_attention", layer=1, head=0) == pytest.approx(1.0)
    # causal uniform baseline: mean over q = 1..23 of 1 / (q + 1)
    assert res.value("uniform_attention") == pytest.approx(np.mean([1 / (q + 1) for q in range(1, 24)]))


def test_a_token_sink_sums_attention_over_its_occurrences(tiny_llama):
    tok = zoo.info(tiny_llama).tokenizer
    dot = tok(".", add_special_tokens=False)["input_ids"][0]
    tokens = [1] + [tok("a", add_special_tokens=False)["input_ids"][0], dot] * 10
    ds = data.Dataset([np.array(tokens)], "test", "as-given", {}, None)
    dots = [i for i, t in enumerate(tokens) if t == dot]

    def onto_dots(pattern):
        pattern[:] = 0
        for q in range(pattern.shape[-1]):
            visible = [d for d in dots if d <= q]
            pattern[..., q, visible[-1] if visible else 0] = 1.0
        return pattern

    with plant(tiny_llama, 0, onto_dots):
        res = probes.sinks(tiny_llama, ds, sink="tok:.", eps=[0.5], progress=False)
    assert res.value("sink_attention", layer=0, head=1) == pytest.approx(1.0)
    assert res.value("sink_attention", layer=1, head=1) < 0.9


def test_encoder_sinks_use_cls_and_sep(tiny_bert):
    ds = batch_of(tiny_bert)
    cls = probes.sinks(tiny_bert, ds, sink="cls", progress=False)
    bos = probes.sinks(tiny_bert, ds, sink="bos", progress=False)
    assert cls.value("sink_attention", layer=0, head=0) == pytest.approx(bos.value("first_token_attention", layer=0, head=0))
    sep = probes.sinks(tiny_bert, ds, sink="sep", progress=False)
    assert sep.value("uniform_attention") == pytest.approx(1 / 24)


@pytest.mark.parametrize("kwargs, message", [
    ({"sink": 24}, r"sink position 24 is outside the sequence: allowed 0\.\.23"),
    ({"sink": 23}, "no query that can see the sink"),
    ({"sink": "sep"}, "encoder token"),
    ({"sink": "tok:<eos>"}, "do not occur"),
    ({"sink": "tok:ab"}, "not a single token"),
    ({"sink": "nonsense"}, "cannot read sink"),
    ({"eps": [1.2]}, r"eps = 1\.2 is out of range: allowed \[0, 1\]"),
    ({"layers": "0-5"}, r"layer 2 is out of range for tiny-llama: allowed 0\.\.1"),
])
def test_bad_probe_input_is_one_clear_error(tiny_llama, kwargs, message):
    with pytest.raises(InputError, match=message):
        probes.sinks(tiny_llama, batch_of(tiny_llama), progress=False, **kwargs)


def test_a_model_without_pattern_hooks_is_refused(tiny_llama, monkeypatch):
    class Fused:
        sinkbench = zoo.info(tiny_llama)
        hook_dict: dict = {}

    with pytest.raises(InputError, match="exposes no attention pattern"):
        probes.sinks(Fused(), batch_of(tiny_llama), progress=False)


def test_auto_sink_finds_the_planted_position(tiny_llama):
    ds = batch_of(tiny_llama, window=16)

    def onto_three(pattern):
        pattern[:] = 0
        pattern[..., 3:, 3] = 1.0
        for q in range(3):
            pattern[..., q, q] = 1.0
        return pattern

    with tiny_llama.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"),
                                      lambda t, hook: onto_three(t.clone()))]):
        assert probes.detect_sinks(tiny_llama, ds, eps=0.5, progress=False) == [3]
        res = probes.sinks(tiny_llama, ds, sink="auto:0.5", progress=False)
    assert res.provenance["auto_sink_positions"] == [3]
    assert res.value("sink_attention", layer=0, head=0) == pytest.approx(1.0)


def test_sink_tokens_ranks_the_token_that_receives_attention(tiny_llama):
    tok = zoo.info(tiny_llama).tokenizer
    comma = tok(",", add_special_tokens=False)["input_ids"][0]
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(3):
        body = rng.integers(60, 120, size=40)
        body[[5, 15, 25]] = comma
        seqs.append(np.concatenate([[1], body]))
    ds = data.Dataset(seqs, "test", "as-given", {}, None)

    positions = [6, 16, 26]

    def plant_commas(pattern):
        pattern[:] = 0
        for q in range(pattern.shape[-1]):
            seen = [p for p in positions if p < q]
            pattern[..., q, seen[-1] if seen else q] = 1.0
        return pattern

    with tiny_llama.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"),
                                      lambda t, hook: plant_commas(t.clone()))]):
        res = probes.sink_tokens(tiny_llama, ds, top=5, min_queries=4, progress=False)
    top = res.filter(metric="ratio_to_uniform", rank=1).rows[0]
    assert top["token"] == "," and top["count"] == 9 and top["value"] > 5


def test_massive_activations_locate_a_planted_spike(tiny_llama):
    ds = batch_of(tiny_llama)

    def spike(resid):
        resid[:, 0, 5] = 5000.0
        return resid

    with tiny_llama.hooks(fwd_hooks=[("blocks.1.hook_resid_post", lambda t, hook: spike(t.clone()))]):
        res = probes.massive_activations(tiny_llama, ds, progress=False)
    top = res.filter(metric="top1", layer=1).rows[0]
    assert (top["value"], top["position"], top["dim"], top["token"]) == (5000.0, 0, 5, "<bos>")
    assert res.value("first_massive_layer") == 1
    assert res.value("massive_count", layer=1) == len(ds)
    assert res.filter(metric="massive_dims", layer=1).rows[0]["dim"] == 5
    ratio = probes.massive_activations(tiny_llama, ds, rule="ratio", ratio_threshold=1e9, progress=False)
    assert ratio.value("first_massive_layer") is None
    with pytest.raises(InputError, match="unknown massive-activation rule"):
        probes.massive_activations(tiny_llama, ds, rule="loud")


def test_norms_match_a_direct_computation(tiny_llama):
    ds = batch_of(tiny_llama, n=2)
    res = probes.norms(tiny_llama, ds, progress=False)
    sinks = probes.sinks(tiny_llama, ds, progress=False)
    tokens = ds.tensor()
    with torch.no_grad():
        _, cache = tiny_llama.run_with_cache(tokens, names_filter=lambda n: n.startswith("blocks.1.attn"))
    pattern = cache["blocks.1.attn.hook_pattern"]  # [b, h, q, k]
    value = cache["blocks.1.attn.hook_v"].repeat_interleave(2, dim=2)  # GQA: query head h reads kv h // 2
    w_o = tiny_llama.blocks[1].attn.W_O
    head = 3
    f0 = value[:, 0, head] @ w_o[head]  # [b, d_model]
    written = (pattern[:, head, 1:, 0, None] * f0[:, None]).norm(dim=-1).mean()
    assert res.value("written_norm_sink", layer=1, head=head) == pytest.approx(written.item(), rel=1e-5)
    assert res.value("value_norm_sink", layer=1, head=head) == pytest.approx(value[:, 0, head].norm(dim=-1).mean().item(), rel=1e-5)
    assert res.value("attention_share_sink", layer=1, head=head) == pytest.approx(
        sinks.value("first_token_attention", layer=1, head=head), abs=1e-6)
    shares = res.filter(metric="contribution_share_sink").df.value
    assert ((shares >= 0) & (shares <= 1)).all()


def test_implicit_bias_on_causal_and_encoder_models(tiny_llama, tiny_bert):
    ds = batch_of(tiny_llama, n=6)
    res = probes.implicit_bias(tiny_llama, ds, progress=False)
    # position 0 sees only BOS: its value vector is the same in every sequence
    assert res.filter(metric="sink_value_max_deviation_relative").df.value.max() < 1e-5
    tokens = ds.tensor()
    with torch.no_grad():
        _, cache = tiny_llama.run_with_cache(tokens, names_filter=lambda n: n.startswith("blocks.0.attn"))
    pattern, value = cache["blocks.0.attn.hook_pattern"], cache["blocks.0.attn.hook_v"].repeat_interleave(2, dim=2)
    u = pattern[:, 2, 1:, 0, None] * (value[:, 0, 2] @ tiny_llama.blocks[0].attn.W_O[2])[:, None]  # [b, q, d]
    u = u.reshape(-1, u.shape[-1])
    cv = ((u - u.mean(0)).norm(dim=-1).pow(2).mean().sqrt() / u.mean(0).norm()).item()
    assert res.value("sink_term_cv", layer=0, head=2) == pytest.approx(cv, rel=1e-4)
    assert res.value("sink_term_norm", layer=0, head=2) == pytest.approx(u.norm(dim=-1).mean().item(), rel=1e-5)
    bert = probes.implicit_bias(tiny_bert, batch_of(tiny_bert, n=6), progress=False)
    # layer 0 reads only the [CLS] embedding; from layer 1 on, bidirectional attention mixes in the input
    deviation = bert.filter(metric="sink_value_max_deviation_relative").df
    assert deviation[deviation.layer == 0].value.max() < 1e-6
    assert deviation[deviation.layer == 1].value.min() > 1e-3


def test_heads_labels_follow_the_thresholds(tiny_llama):
    ds = batch_of(tiny_llama)
    with plant(tiny_llama, 1, all_on_first):
        res = probes.heads(tiny_llama, ds, dormant_output=10.0, progress=False)
    labels = {(r["layer"], r["head"]): r["label"] for r in res.filter(metric="head_class")}
    assert all(labels[(1, h)] == "dormant-candidate" for h in range(4))
    counts = {r["label"]: r["value"] for r in res.filter(metric="head_count")}
    assert sum(counts.values()) == 8 and counts["dormant-candidate"] >= 4


def test_attention_maps_average_the_pattern(tiny_llama):
    ds = batch_of(tiny_llama, n=3, window=8)
    res = probes.attention_maps(tiny_llama, ds, layers=[1], heads=[0], progress=False)
    with torch.no_grad():
        _, cache = tiny_llama.run_with_cache(ds.tensor(), names_filter="blocks.1.attn.hook_pattern")
    mean = cache["blocks.1.attn.hook_pattern"][:, 0].mean(0)
    assert res.value("attention", layer=1, head=0, q=5, k=2) == pytest.approx(mean[5, 2].item(), abs=1e-6)
    assert len(res) == 36  # lower triangle of 8 x 8


def test_hook_attn_scores_is_pre_softmax_on_llama_and_gemma_not_on_bert(tiny_llama, tiny_gemma, tiny_bert):
    assert sites.scores_are_pre_softmax(tiny_llama)
    assert sites.scores_are_pre_softmax(tiny_gemma)
    assert not sites.scores_are_pre_softmax(tiny_bert)  # the BERT adapter fires it post hoc on the weights


def dotted(model, n=6, length=24, seed=0):
    """Sequences with '.' at two positions that move from sequence to sequence, and the first dots' positions."""
    tok = zoo.info(model).tokenizer
    dot = tok(".", add_special_tokens=False)["input_ids"][0]
    rng = np.random.default_rng(seed)
    pool = [i for i in range(60, 120) if i != dot]
    seqs, firsts = [], []
    for i in range(n):
        body = rng.choice(pool, size=length - 1)
        body[[1 + i, 9 + i]] = dot
        seqs.append(np.concatenate([[1], body]))
        firsts.append(2 + i)
    return data.Dataset(seqs, "dotted", "as-given", {}, None), dot, firsts


def test_first_occurrence_sinks_take_one_batched_call_equal_to_a_loop_over_sequences(tiny_llama):
    ds, dot, firsts = dotted(tiny_llama)
    batched = probes.sinks(tiny_llama, ds, sink="first:tok:.", progress=False)
    assert batched.provenance["sink"] == "first:tok:." and batched.rows[0]["sink"] == "first:tok:."
    looped = [probes.sinks(tiny_llama, ds.subset([i]), sink=p, progress=False) for i, p in enumerate(firsts)]
    for layer, head in [(0, 0), (1, 3)]:
        pooled = sum(r.value("sink_attention", layer=layer, head=head) * r.filter(metric="sink_attention").rows[0]["n"]
                     for r in looped) / sum(r.filter(metric="sink_attention").rows[0]["n"] for r in looped)
        assert batched.value("sink_attention", layer=layer, head=head) == pytest.approx(pooled, abs=1e-7)
    tokens = ds.tensor()
    mask = (tokens == dot) & ((tokens == dot).cumsum(1) == 1)
    for sink in (mask, mask.numpy(), list(mask), lambda t: (t == dot) & ((t == dot).cumsum(1) == 1)):
        again = probes.sinks(tiny_llama, ds, sink=sink, batch_size=4, progress=False)
        assert again.value("sink_attention", layer=1, head=3) == pytest.approx(
            batched.value("sink_attention", layer=1, head=3), abs=1e-7)
    every = probes.sinks(tiny_llama, ds, sink="tok:.", progress=False)
    assert every.value("sink_attention", layer=1, head=3) != pytest.approx(
        batched.value("sink_attention", layer=1, head=3), abs=1e-6)
    for probe in (probes.heads, probes.norms, probes.implicit_bias):  # every probe that takes a sink takes these
        assert len(probe(tiny_llama, ds, sink=mask, progress=False)) > 0


def test_special_token_attention_labels_rows_with_the_sink_spec(tiny_bert):
    tok = zoo.info(tiny_bert).tokenizer
    dot = tok(".", add_special_tokens=False)["input_ids"][0]
    ds = batch_of(tiny_bert)
    seqs = [s.copy() for s in ds.sequences]
    for s in seqs:
        s[5] = dot
    res = probes.special_token_attention(tiny_bert, data.Dataset(seqs, "dots", "as-given", {}, None),
                                         targets=("cls", "sep", "tok:.", "tok:,"))
    assert sorted(set(res.df.target)) == ["cls", "sep", "tok:."]  # what filter(target=...) and sinks(sink=) take
    assert dict(zip(res.df.target, res.df.target_name)) == {"cls": "[CLS]", "sep": "[SEP]", "tok:.": "'.'"}
    assert res.provenance["absent_targets"] == ["tok:,"]
    assert len(res.filter(target="tok:.")) == 2 * 4


def test_sink_labels_read_back_as_the_same_sink():
    for text in ("bos", "0,5", "tok:.", "tok:\\n", "first:tok:.", "cls", "sep", "auto:0.3", "patch:1,2", "reg:1"):
        spec = sites.SinkSpec.parse(text)
        assert sites.SinkSpec.parse(spec.label) == spec, text
    assert sites.SinkSpec.parse("tok:\\n").tokens == ("\n",) and sites.SinkSpec.parse("tok:\\u00e9").tokens == ("é",)
    assert sites.SinkSpec.parse("tok:é\\t").tokens == ("é\t",)  # escapes next to non-ASCII text
