"""The intervention catalogue and the runner on tiny random models."""

import dataclasses
import json
import os

import pytest
import torch

import interventions as iv
from interventions import AttentionEdit, register
from workbench import experiment, zoo
from workbench.core import data, sites
from workbench.core.errors import InputError, InterventionError
from workbench.core.results import Results
from workbench.experiment import scoring
from workbench.experiment.attribution import attribution_sweep, spearman

ALL = ["mask-sink", "zero-implicit-bias", "mean-implicit-bias", "zero-sink-value", "mean-sink-value",
       "patch-values", "scale-sink:gamma=0.5", "softmax-plus-one", "massive-activations:layers=0,dims=3",
       "window-attention:window=4"]


def prompts(model, n=6, window=24, seed=0):
    return data.control_prompts(model, "random", window=window, n=n, seed=seed)


def logits_under(model, intervention, tokens, dataset=None):
    with torch.no_grad(), experiment.hooked(model, intervention, tokens, data=dataset):
        return model(tokens)


def test_no_op_interventions_reproduce_the_baseline_logits_exactly(tiny_llama):
    ds = prompts(tiny_llama)
    tokens = ds.tensor()
    with torch.no_grad():
        base = tiny_llama(tokens)
    assert torch.equal(logits_under(tiny_llama, "none", tokens), base)
    assert torch.equal(logits_under(tiny_llama, "patch-values:source=roll:0", tokens, ds), base)
    assert torch.allclose(logits_under(tiny_llama, "scale-sink:gamma=1", tokens), base, atol=1e-5)
    res = experiment.run(tiny_llama, ds, ["patch-values:source=roll:0"], progress=False)
    assert res.value("delta_loss", intervention="patch-values(source='roll:0')") == 0.0
    assert res.value("kl", intervention="patch-values(source='roll:0')") == 0.0


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_zero_implicit_bias_equals_zero_sink_value(name):
    model = zoo.load(name)
    ds = prompts(model)
    res = experiment.run(model, ds, ["zero-implicit-bias", "zero-sink-value"], progress=False)
    zib, zsv = (res.value("loss", intervention=k) for k in ("zero-implicit-bias", "zero-sink-value"))
    assert zib == pytest.approx(zsv, abs=1e-6) and zib != res.value("loss", intervention="none")
    tokens = ds.tensor()
    assert torch.allclose(logits_under(model, "zero-implicit-bias:heads=1", tokens),
                          logits_under(model, "zero-sink-value:heads=1", tokens), atol=1e-5)


def pattern_after(model, intervention, tokens, layer):
    seen = {}
    with torch.no_grad(), experiment.hooked(model, intervention, tokens):
        with model.hooks(fwd_hooks=[(sites.pattern(layer), lambda t, hook: seen.setdefault("p", t.clone()))]):
            model(tokens)
    return seen["p"]


def test_mask_sink_rows_sum_to_one_without_nan(tiny_llama):
    tokens = prompts(tiny_llama).tensor()
    pattern = pattern_after(tiny_llama, "mask-sink", tokens, 1)
    assert torch.isfinite(pattern).all()
    assert torch.allclose(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-5)
    assert (pattern[:, :, 1:, 0] == 0).all()
    assert torch.equal(pattern[:, :, 0, 0], torch.ones_like(pattern[:, :, 0, 0]))  # row 0 left as it was


def test_scale_sink_follows_zerotuning(tiny_llama):
    tokens = prompts(tiny_llama).tensor()
    before = pattern_after(tiny_llama, "none", tokens, 0)
    after = pattern_after(tiny_llama, "scale-sink:gamma=3,layers=0", tokens, 0)
    a0 = before[:, :, 1:, 0]
    assert torch.allclose(after[:, :, 1:, 0], 3 * a0 / (2 * a0 + 1), atol=1e-6)


def test_softmax_plus_one_matches_the_formula(tiny_llama):
    tokens = prompts(tiny_llama).tensor()
    seen = {}
    with torch.no_grad(), tiny_llama.hooks(fwd_hooks=[(sites.scores(1), lambda t, hook: seen.setdefault("s", t.clone()))]):
        tiny_llama(tokens)
    scores = seen["s"].float()
    expected = scores.exp() / (1 + scores.exp().sum(-1, keepdim=True))
    assert torch.allclose(pattern_after(tiny_llama, "softmax-plus-one:layers=1", tokens, 1), expected, atol=1e-6)


def test_window_attention_keeps_sinks_and_the_last_w_keys(tiny_llama):
    tokens = prompts(tiny_llama).tensor()
    pattern = pattern_after(tiny_llama, "window-attention:window=3,n_sinks=2", tokens, 0)
    q, k = 10, torch.arange(24)
    visible = (k < 2) | ((q - k >= 0) & (q - k < 3))
    assert (pattern[:, :, q, ~visible] == 0).all() and (pattern[:, :, q, visible] > 0).all()
    with pytest.raises(InputError, match="causal mask"):
        iv.get("window-attention").validate(zoo.load("tiny-bert"))


def test_disjoint_compositions_commute_and_equal_both_applied(tiny_llama):
    tokens = prompts(tiny_llama).tensor()
    a, b = iv.parse("mask-sink:layers=0"), iv.parse("scale-sink:gamma=3,layers=1")
    ab = logits_under(tiny_llama, a + b, tokens)
    assert torch.equal(ab, logits_under(tiny_llama, b + a, tokens))
    with torch.no_grad(), experiment.hooked(tiny_llama, a, tokens), experiment.hooked(tiny_llama, b, tokens):
        both = tiny_llama(tokens)
    assert torch.equal(ab, both)
    assert not torch.allclose(ab, logits_under(tiny_llama, a, tokens))


def test_patching_changes_exactly_the_patched_heads(tiny_llama):
    ds = prompts(tiny_llama)
    tokens = ds.tensor()
    seen = {}
    grab = [(sites.z(1), lambda t, hook: seen.setdefault("z", t.clone()))]
    with torch.no_grad(), tiny_llama.hooks(fwd_hooks=grab):
        tiny_llama(tokens)
    clean = seen.pop("z")
    patch = iv.parse("patch-values:source=roll:1,positions=5-9,heads=3,layers=1")
    with torch.no_grad(), experiment.hooked(tiny_llama, patch, tokens, data=ds), tiny_llama.hooks(fwd_hooks=grab):
        tiny_llama(tokens)
    patched = seen.pop("z")
    diff = (patched - clean).abs().amax(dim=(0, 1, 3))  # per head
    assert diff[3] > 1e-3
    assert diff[[0, 1, 2]].max() < 1e-6  # head 2 shares KV head 1 with head 3 (GQA) and is restored exactly
    assert (patched - clean)[:, :5, 3].abs().max() < 1e-6  # queries before the patched keys cannot see them


@pytest.mark.parametrize("model_name", ["tiny-llama", "tiny-gemma3", "tiny-bert"])
def test_every_catalogue_entry_runs_on_every_family(model_name):
    model = zoo.load(model_name)
    ds = prompts(model)
    entries = [e for e in ALL if not (e.startswith("window") and model_name == "tiny-bert")]
    res = experiment.run(model, ds, entries, progress=False)
    metric = "kl" if zoo.info(model).causal else "embedding_cosine"
    values = res.filter(metric=metric).df
    assert len(values) == len(entries) and values.value.notna().all()
    assert set(iv.catalogue()) >= {e.split(":")[0] for e in ALL} | {"none"}


def test_bert_pattern_edits_apply_through_the_rebuilt_pattern(tiny_bert):
    """The BERT adapter discards hook_pattern edits; the catalogue applies them as z += (A' - A) v."""
    from interventions.mechanisms import pattern_edits_flow

    assert not pattern_edits_flow(tiny_bert) and pattern_edits_flow(zoo.load("tiny-llama"))
    tokens = prompts(tiny_bert).tensor()
    seen = {}
    names = ["blocks.0.attn.hook_pattern", "blocks.0.attn.hook_v", "blocks.0.attn.hook_z"]
    grab = [(n, lambda t, hook, n=n: seen.setdefault(n, t.clone())) for n in names]
    with torch.no_grad(), tiny_bert.hooks(fwd_hooks=grab):
        tiny_bert(tokens)
    pattern, value, clean_z = (seen.pop(n) for n in names)
    masked = pattern.clone()
    masked[:, :, 1:, 0] = 0
    masked = torch.where(torch.arange(24)[None, None, :, None] >= 1, masked / masked.sum(-1, keepdim=True), pattern)
    expected = torch.einsum("bhqk,bkhd->bqhd", masked, value)
    with torch.no_grad(), experiment.hooked(tiny_bert, "mask-sink:layers=0", tokens), \
            tiny_bert.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda t, hook: seen.setdefault("z", t.clone()))]):
        tiny_bert(tokens)
    assert torch.allclose(seen["z"], expected, atol=1e-5)
    assert not torch.allclose(clean_z, expected, atol=1e-4)


def test_mean_implicit_bias_does_not_depend_on_the_batch_size(tiny_llama):
    ds = prompts(tiny_llama, n=6)
    small = experiment.run(tiny_llama, ds, ["mean-implicit-bias"], batch_size=2, progress=False)
    large = experiment.run(tiny_llama, ds, ["mean-implicit-bias"], batch_size=6, progress=False)
    assert small.value("loss", intervention="mean-implicit-bias") == pytest.approx(
        large.value("loss", intervention="mean-implicit-bias"), abs=1e-6)


def test_mean_implicit_bias_constant_is_mean_attention_times_mean_value(tiny_llama):
    ds = prompts(tiny_llama, n=4)
    state = iv.get("mean-implicit-bias", layers=1).prepare(tiny_llama, ds)
    with torch.no_grad():
        _, cache = tiny_llama.run_with_cache(ds.tensor(), names_filter=lambda n: n.startswith("blocks.1.attn.hook_"))
    mean_a = cache["blocks.1.attn.hook_pattern"][:, :, 1:, 0].mean(dim=(0, 2))  # [h]
    mean_v = cache["blocks.1.attn.hook_v"][:, 0].mean(0).repeat_interleave(2, dim=0)  # [h, d]
    assert torch.allclose(state[1], mean_a[:, None] * mean_v, atol=1e-6)


def test_a_user_defined_intervention_in_a_few_lines_works_everywhere(tiny_llama):
    @register("test-sharpen-sink")
    class SharpenSink(AttentionEdit):
        power: float = 2.0

        def edit(self, pattern, ctx, layer, scores=None):
            sharpened = pattern ** self.power
            return sharpened / sharpened.sum(-1, keepdim=True), None

    composed = iv.parse("test-sharpen-sink:power=3,layers=1 + mask-sink:layers=0")
    assert iv.from_spec(json.loads(json.dumps(composed.spec()))) == composed
    res = experiment.sweep(tiny_llama, prompts(tiny_llama), "test-sharpen-sink:power=3", over="layer", progress=False)
    assert sorted(r["layer"] for r in res.filter(metric="kl") if r["layer"] is not None) == [0, 1]


def test_reprs_specs_and_provenance_rebuild_the_interventions(tiny_llama):
    entry = iv.parse("scale-sink:gamma=0.25,layers=1,heads=0-2")
    assert str(entry) == "scale-sink(layers=1, heads='0-2', gamma=0.25)"
    res = experiment.run(tiny_llama, prompts(tiny_llama), [entry], progress=False)
    saved = res.provenance["interventions"][str(entry)]
    assert iv.from_spec(saved) == entry


@pytest.mark.parametrize("text, message", [
    ("mask-sink:layers=7", r"layer 7 is out of range for tiny-llama: allowed 0\.\.1"),
    ("mask-sink:heads=9", r"head 9 is out of range for tiny-llama: allowed 0\.\.3"),
    ("scale-sink:gamma=-1", "gamma = -1.0 must be >= 0"),
    ("scale-sink:gama=2", "unknown parameter 'gama'"),
    ("mask-sinks", "unknown intervention 'mask-sinks': the catalogue has"),
    ("scale-sink:gamma=abc", "not a valid float"),
    ("mean-sink-value:sink=tok:.", "fixed sink positions"),
])
def test_bad_interventions_fail_before_any_forward_pass(tiny_llama, text, message):
    with pytest.raises(InputError, match=message):
        experiment.run(tiny_llama, prompts(tiny_llama), [text], progress=False)


def test_data_dependent_errors_come_before_any_forward_pass(tiny_llama, monkeypatch):
    calls = []
    for scorer_class in (scoring.Scorer, scoring.CausalLMScorer):  # the causal scorer overrides outputs()
        monkeypatch.setattr(scorer_class, "outputs", lambda *a, **k: calls.append(1))
    with pytest.raises(InputError, match=r"sink position 30 is outside the sequence: allowed 0\.\.23"):
        experiment.run(tiny_llama, prompts(tiny_llama), ["mask-sink:sink=30"], progress=False)
    assert not calls


def test_patch_source_of_a_different_length_is_refused(tiny_llama, tmp_path):
    source = tmp_path / "source.jsonl"
    source.write_text(json.dumps({"tokens": [1, 5, 6, 7]}) + "\n")
    with pytest.raises(InputError, match="source sequence 0 has 4 tokens, the target 24"):
        experiment.run(tiny_llama, prompts(tiny_llama), [f"patch-values:source={source}"], progress=False)


def test_nan_is_caught_and_named_with_its_layer(tiny_llama):
    @register("test-nan-at-layer-one")
    class Poison(AttentionEdit):
        def edit(self, pattern, ctx, layer, scores=None):
            return pattern * float("nan"), None

    with pytest.raises(InterventionError, match=r"test-nan-at-layer-one\(layers=1\) produced NaN/inf at layer 1"):
        experiment.run(tiny_llama, prompts(tiny_llama), ["test-nan-at-layer-one:layers=1"], progress=False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_one_nonfinite_entry_is_caught_by_the_finite_check(bad):
    from interventions.mechanisms import _check_finite

    pattern = torch.rand(2, 3, 5, 5)
    _check_finite(pattern, "x", "layer 0")
    pattern[1, 2, 4, 3] = bad
    with pytest.raises(InterventionError, match="x produced NaN/inf at layer 0"):
        _check_finite(pattern, "x", "layer 0")
    both = torch.rand(2, 3, 5, 5)
    both[0, 0, 0, 0], both[1, 1, 1, 1] = float("inf"), -float("inf")  # a sum of NaN
    with pytest.raises(InterventionError):
        _check_finite(both, "x", "layer 0")


def test_finite_entries_whose_sum_overflows_pass_the_finite_check():
    from interventions.mechanisms import _check_finite
    from workbench.core.metrics import all_finite

    big = torch.full((4, 4), 3e38)  # every entry finite; the float32 sum is inf
    assert not torch.isfinite(big.sum())
    _check_finite(big, "x", "layer 0")
    assert all_finite(big) and all_finite(big.half().clamp(max=6e4))  # float16: the sum overflows too
    big[2, 1] = float("nan")
    assert not all_finite(big)


@pytest.mark.parametrize("per_head", [False, True])
def test_renormalise_rescales_rows_in_scope_and_leaves_the_others(per_head):
    from interventions.attention import renormalise

    torch.manual_seed(0)
    pattern = torch.softmax(torch.randn(2, 3, 6, 6), -1)
    pattern[:, :, 2] = 0.0
    pattern[:, :, 2, 0] = 1.0  # a row whose whole mass sits on the sink
    sink = torch.zeros(2, 1, 1, 6, dtype=torch.bool)
    sink[..., 0] = True
    rows = torch.ones(2, 3 if per_head else 1, 6, 1, dtype=torch.bool)
    rows[:, :, 0] = False
    rows[1, :, 4] = False
    new = renormalise(pattern, pattern * ~sink, rows)
    assert new.dtype == pattern.dtype and new.shape == pattern.shape
    scaled = rows.expand(2, 3, 6, 1)[..., 0].clone()
    scaled[:, :, 2] = False
    assert torch.equal(new[~scaled], pattern[~scaled])  # out of scope, or nothing left to rescale: unchanged
    assert torch.allclose(new[scaled].sum(-1), torch.ones(int(scaled.sum())), atol=1e-6)
    assert (new[scaled][:, 0] == 0).all()
    ratio = new[scaled][:, 1:] / pattern[scaled][:, 1:]
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)  # the other keys keep their ratios


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_scale_sink_is_the_renormalised_scalar_product_in_every_dtype(dtype):
    from interventions.attention import ScaleSink, renormalise
    from workbench.passes import PassContext

    torch.manual_seed(1)
    pattern = torch.softmax(torch.randn(2, 3, 8, 8, dtype=torch.float64), -1).to(dtype)
    sink = torch.zeros(2, 8, dtype=torch.bool)
    sink[:, 0] = True
    sink[1, 3] = True
    queries = torch.ones(2, 8, dtype=torch.bool)
    queries[:, 0] = False
    ctx = PassContext(None, torch.zeros(2, 8, dtype=torch.long), slice(0, 2), sink, queries, None)
    for gamma in (0.3, 0.0, 2.7):
        scaled = torch.where(sink[:, None, None, :], pattern * gamma, pattern)
        expected = renormalise(pattern, scaled, queries[:, None, :, None])
        assert torch.equal(ScaleSink(gamma=gamma).edit(pattern, ctx, 0)[0], expected)


def test_metrics_that_mean_nothing_are_refused(tiny_bert, tiny_llama):
    with pytest.raises(InputError, match="means nothing on tiny-bert"):
        experiment.run(tiny_bert, prompts(tiny_bert), ["mask-sink"], metrics=["loss"], progress=False)
    with pytest.raises(InputError, match="logit_diff needs a token pair"):
        experiment.run(tiny_llama, prompts(tiny_llama), ["mask-sink"], metrics=["logit_diff"], progress=False)
    res = experiment.run(tiny_llama, prompts(tiny_llama), ["mask-sink"], logit_pair=("a", "b"), progress=False)
    assert res.filter(metric="delta_logit_diff").rows and res.filter(metric="logit_diff", intervention="none").rows


def test_confidence_intervals_and_baseline_rows(tiny_llama):
    res = experiment.run(tiny_llama, prompts(tiny_llama), ["mask-sink"], progress=False)
    base = res.filter(metric="loss", intervention="none").rows[0]
    assert base["ci_low"] < base["value"] < base["ci_high"] and base["n"] == 6 * 23
    delta = res.filter(metric="delta_loss").rows[0]
    assert delta["value"] == pytest.approx(res.value("loss", intervention="mask-sink") - base["value"], abs=1e-9)


def test_a_sweep_killed_half_way_resumes_without_recomputing(tiny_llama, tmp_path, monkeypatch):
    ds = prompts(tiny_llama)
    out = tmp_path / "sweep.json"
    real = scoring.CausalLMScorer.unit
    calls = {"n": 0}

    def dies_after_four(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring.CausalLMScorer, "unit", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        experiment.sweep(tiny_llama, ds, "zero-implicit-bias", over="head", out=out, units_per_chunk=2,
                         batch_size=6, progress=False)
    journal = [json.loads(line) for line in (tmp_path / "sweep.json.partial.jsonl").read_text().splitlines()[1:]]
    assert len(journal) == 4  # two chunks of two heads finished before the crash
    monkeypatch.setattr(scoring.CausalLMScorer, "unit", real)
    resumed = experiment.sweep(tiny_llama, ds, "zero-implicit-bias", over="head", out=out, units_per_chunk=2,
                               batch_size=6, progress=False)
    assert resumed.provenance["resumed_units"] == 4
    fresh = experiment.sweep(tiny_llama, ds, "zero-implicit-bias", over="head", progress=False)
    key = lambda r: (r["intervention"], r["metric"])  # noqa: E731
    assert sorted((key(r), round(r["value"], 9)) for r in resumed) == sorted((key(r), round(r["value"], 9)) for r in fresh)
    assert Results.load(out).provenance["identity_hash"]


def test_attribution_ranks_heads_like_the_exact_sweep(tiny_llama):
    ds = prompts(tiny_llama, n=6, window=32)
    for name in ("zero-implicit-bias", "mask-sink"):
        estimate = attribution_sweep(tiny_llama, ds, name, progress=False)
        exact = experiment.sweep(tiny_llama, ds, name, over="head", progress=False)
        assert spearman(estimate, exact) > 0.8
    with pytest.raises(InputError, match="leave heads unset"):
        attribution_sweep(tiny_llama, ds, "mask-sink:heads=1")


def test_interventions_are_frozen_values():
    entry = iv.get("scale-sink", gamma=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.gamma = 2.0
    assert entry == iv.parse("scale-sink:gamma=0.5") and hash(entry) == hash(iv.parse("scale-sink:gamma=0.5"))


def test_renormalising_keeps_each_rows_total_weight():
    from interventions.attention import renormalise

    pattern = torch.tensor([[[[1.0, 0.0, 0.0], [0.6, 0.2, 0.0], [0.3, 0.1, 0.1]]]])  # rows sum to 1, 0.8, 0.5
    edited = pattern.clone()
    edited[..., 0] = 0
    rows = torch.tensor([False, True, True])[None, None, :, None]
    out = renormalise(pattern, edited, rows)
    assert torch.allclose(out.sum(-1), pattern.sum(-1))  # the sink's weight goes to the other keys
    assert torch.allclose(out[0, 0, 1], torch.tensor([0.0, 0.8, 0.0]))
    assert torch.equal(out[0, 0, 0], pattern[0, 0, 0])  # row q = 0 is out of scope: unchanged


# --------------------------------------------------------------------------------------------------
# Per-sequence sinks, labels, the journal, reruns, the extension contract (issue 13)
# --------------------------------------------------------------------------------------------------


def dotted(model, n=6, length=20, seed=0):
    """Sequences with '.' at two positions that differ from sequence to sequence; the first dots' positions."""
    import numpy as np

    tok = zoo.info(model).tokenizer
    dot = tok(".", add_special_tokens=False)["input_ids"][0]
    rng = np.random.default_rng(seed)
    pool = [i for i in range(60, 120) if i != dot]
    seqs, firsts = [], []
    for i in range(n):
        body = rng.choice(pool, size=length - 1)
        first = 2 + i
        body[[first - 1, first + 6]] = dot
        seqs.append(np.concatenate([[1], body]))
        firsts.append(first)
    return data.Dataset(seqs, "dotted", "as-given", {}, None), dot, firsts


def test_a_per_sequence_sink_is_one_batched_call_equal_to_a_loop_over_sequences(tiny_llama):
    ds, dot, firsts = dotted(tiny_llama)
    tokens = ds.tensor()
    first_mask = (tokens == dot) & ((tokens == dot).cumsum(1) == 1)
    assert torch.equal(sites.SinkSpec.parse("first:tok:.").key_mask(tokens, tiny_llama), first_mask)
    assert first_mask.sum(1).tolist() == [1] * 6 and first_mask.float().argmax(1).tolist() == firsts
    forms = {"first:tok:.": "first:tok:.", "mask": first_mask, "numpy mask": first_mask.numpy(),
             "per-sequence list": list(first_mask), "callable": lambda t: (t == dot) & ((t == dot).cumsum(1) == 1)}
    values = {}
    for label, sink in forms.items():
        res = experiment.run(tiny_llama, ds, [iv.get("mask-sink", sink=sink)], batch_size=4, progress=False)
        values[label] = [r["value"] for r in res.filter(metric="loss") if r["intervention"] != "none"][0]
    assert len({round(v, 9) for v in values.values()}) == 1, values  # every form of the sink: the same number
    every = experiment.run(tiny_llama, ds, ["mask-sink:sink=tok:."], progress=False)
    assert every.value("loss", intervention="mask-sink(sink='tok:.')") != pytest.approx(values["mask"], abs=1e-6)
    # what the composer had to write before: one call per sequence, each with its own fixed position
    looped = [experiment.run(tiny_llama, ds.subset([i]), [f"mask-sink:sink={p}"], progress=False)
              .value("loss", intervention=f"mask-sink(sink={p})") for i, p in enumerate(firsts)]
    assert values["mask"] == pytest.approx(sum(looped) / len(looped), abs=1e-6)


def test_a_mask_sink_follows_the_sequences_whatever_the_batching(tiny_llama):
    ds, dot, firsts = dotted(tiny_llama, n=5)
    mask = (ds.tensor() == dot) & ((ds.tensor() == dot).cumsum(1) == 1)
    entry = iv.get("zero-implicit-bias", sink=mask)
    small = experiment.run(tiny_llama, ds, [entry], batch_size=2, progress=False)
    large = experiment.run(tiny_llama, ds, [entry], batch_size=5, progress=False)
    key = str(entry)
    assert key.startswith("zero-implicit-bias(sink='mask:")
    assert small.value("kl", intervention=key) == pytest.approx(large.value("kl", intervention=key), abs=1e-7)
    assert entry == iv.get("zero-implicit-bias", sink=mask.clone()) and hash(entry) == hash(iv.get(
        "zero-implicit-bias", sink=mask.clone()))  # masks compare by content
    assert entry != iv.get("zero-implicit-bias", sink=~mask)
    swept = experiment.sweep(tiny_llama, ds, entry, over="layer", progress=False)
    assert sorted(r["layer"] for r in swept.filter(metric="kl")) == [0, 1]
    est = attribution_sweep(tiny_llama, ds, entry, progress=False)  # attribution takes it too
    assert len(est) == 8
    with torch.no_grad(), experiment.hooked(tiny_llama, entry, ds.tensor()[1:3], index=[1, 2]) as ctx:
        tiny_llama(ds.tensor()[1:3])
    assert ctx.sink.float().argmax(1).tolist() == firsts[1:3]


def test_labels_keep_the_parameters_that_were_given_even_at_their_defaults():
    assert str(iv.parse("scale-sink:gamma=0.5")) == "scale-sink(gamma=0.5)"  # 0.5 is the default
    assert str(iv.get("scale-sink", gamma=0.5)) == "scale-sink(gamma=0.5)"
    assert str(iv.get("scale-sink")) == "scale-sink"
    assert str(iv.parse("window-attention:n_sinks=1")) == "window-attention(n_sinks=1)"
    assert str(iv.parse("massive-activations:mode=zero")) == "massive-activations(mode='zero')"
    assert str(iv.parse("mask-sink:sink=bos")) == "mask-sink(sink='bos')"

    @register("test-sink-temperature-label")
    class SinkTemperature(AttentionEdit):
        tau: float = 1.0

        def edit(self, pattern, ctx, layer, scores=None):
            return None, None

    assert str(SinkTemperature(tau=1.0)) == "test-sink-temperature-label(tau=1.0)"
    assert str(SinkTemperature()) == "test-sink-temperature-label"
    assert SinkTemperature(tau=1.0) == SinkTemperature()  # the same intervention; only the label says more
    scoped = iv.parse("scale-sink:gamma=0.5").scoped(layers=(1,))
    assert str(scoped) == "scale-sink(layers=(1,), gamma=0.5)"


def test_a_journaled_run_writes_the_baseline_rows_too(tiny_llama, tmp_path):
    out = tmp_path / "r.json"
    res = experiment.run(tiny_llama, prompts(tiny_llama), ["mask-sink"], out=out, progress=False)
    saved = Results.load(out)
    assert len(saved) == len(res) == 1 + 4  # the baseline's loss + mask-sink's four metrics ("wrote 5 rows" held 4)
    assert saved.value("loss", intervention="none") == pytest.approx(res.value("loss", intervention="none"))
    assert [r["intervention"] for r in saved][:1] == ["none"]


def test_a_sweep_killed_by_sigkill_loses_only_the_unit_in_flight(tmp_path):
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "sweep.json"
    code = textwrap.dedent(f"""
        import os, signal
        from workbench import experiment, zoo
        from workbench.core import data
        from workbench.experiment import scoring
        model = zoo.load("tiny-llama")
        ds = data.control_prompts(model, "random", window=24, n=6, seed=0)
        real, calls = scoring.CausalLMScorer.unit, []
        def dies(*args, **kwargs):
            calls.append(1)
            if len(calls) == 6:
                os.kill(os.getpid(), signal.SIGKILL)  # no handler, no flush: what a crash or an OOM kill does
            return real(*args, **kwargs)
        scoring.CausalLMScorer.unit = dies
        experiment.sweep(model, ds, "zero-implicit-bias", over="head", out={str(out)!r}, batch_size=6,
                         rows_per_forward=6, progress=False)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SINKBENCH_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    lines = (tmp_path / "sweep.json.partial.jsonl").read_text().splitlines()
    assert [json.loads(line)["unit"] for line in lines[1:]] == [f"zero-implicit-bias@L0H{h}" for h in range(4)] + \
        ["zero-implicit-bias@L1H0"]  # five units finished before the sixth was killed: all five are on disk
    resumed = experiment.sweep(zoo.load("tiny-llama"), data.control_prompts(zoo.load("tiny-llama"), "random",
                               window=24, n=6, seed=0), "zero-implicit-bias", over="head", out=out, batch_size=6,
                               rows_per_forward=6, progress=False)
    assert resumed.provenance["resumed_units"] == 5 and len(resumed.filter(metric="kl")) == 8


def test_without_room_for_the_baseline_the_journal_is_still_written_every_few_seconds(tiny_llama, tmp_path,
                                                                                       monkeypatch):
    from workbench.experiment import runner

    monkeypatch.setattr(runner, "_LOGIT_CACHE_BYTES", 0)  # the baseline is recomputed for every group of units
    real, calls = scoring.CausalLMScorer.unit, {"n": 0}

    def dies_after_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring.CausalLMScorer, "unit", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        experiment.sweep(tiny_llama, prompts(tiny_llama), "zero-implicit-bias", over="head", out=tmp_path / "s.json",
                         batch_size=6, rows_per_forward=6, flush_seconds=0, progress=False)
    journal = (tmp_path / "s.json.partial.jsonl").read_text().splitlines()[1:]
    assert len(journal) == 3  # flush_seconds=0: every unit is its own group, journaled at once


def test_a_finished_output_is_reused_and_force_recomputes(tiny_llama, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    ds = prompts(tiny_llama)
    first = experiment.run(tiny_llama, ds, ["mask-sink"], out=out, progress=False)
    said, calls = [], []
    real = scoring.CausalLMScorer.outputs  # the causal scorer has its own outputs() (long sequences: chunks)
    monkeypatch.setattr(scoring.CausalLMScorer, "outputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = experiment.run(tiny_llama, ds, ["mask-sink"], out=out, progress=False, log=said.append)
    assert not calls and len(said) == 1 and f"reusing {out}" in said[0] and "force=True" in said[0]
    assert [r["value"] for r in again] == [r["value"] for r in first] and again.provenance["reused"] == str(out)
    forced = experiment.run(tiny_llama, ds, ["mask-sink"], out=out, progress=False, force=True, log=said.append)
    assert calls and len(said) == 1 and "reused" not in forced.provenance
    other = experiment.run(tiny_llama, prompts(tiny_llama, n=5), ["mask-sink"], out=out, progress=False,
                           resume=False, log=said.append)  # other data: a different run, recomputed
    assert len(said) == 1 and other.value("loss", intervention="none") != first.value("loss", intervention="none")
    swept = tmp_path / "sweep.json"
    experiment.sweep(tiny_llama, ds, "mean-implicit-bias", over="layer", out=swept, progress=False)
    prepared = []
    monkeypatch.setattr(type(iv.get("mean-implicit-bias")), "prepare", lambda *a, **k: prepared.append(1))
    experiment.sweep(tiny_llama, ds, "mean-implicit-bias", over="layer", out=swept, progress=False, log=said.append)
    assert not prepared and "reusing" in said[-1]  # not even the first pass (means) runs again


def test_the_extension_contract_is_public_and_documented():
    for helper in ("sink_columns", "in_scope_rows", "renormalise"):
        assert helper in iv.__all__ and getattr(iv, helper).__doc__.strip()
    doc = iv.AttentionEdit.__doc__
    for fact in ("ctx.sink` [b, k]", "ctx.queries` [b, q]", "needs_scores", "[b, h, q, k]", "[b, q, h, d_head]",
                 "sink_columns(ctx)", "in_scope_rows(ctx)", "renormalise(pattern, edited, rows)"):
        assert fact in doc, fact
    from interventions.attention import renormalise as old_home

    assert old_home is iv.renormalise  # the old import path keeps working
