"""Streaming through a quantised KV cache (workbench.streaming.quant) on the tiny random Llama (2 layers,
GQA 4/2 heads, d_head 16, RoPE): what each step reads is quantize_kv_tensor of what the cache holds."""

import numpy as np
import pytest
import torch

from interventions.quant import QuantizeKV, quantize_kv_tensor
from workbench import cli, streaming
from workbench.core.errors import InputError
from workbench.core.metrics import token_nll
from workbench.core.results import Results
from workbench.experiment import hooked
from workbench.streaming import Dense, KVCacheQuant, Recompute, Sinks, Window, stream_nll
from workbench.streaming.engine import LlamaDecoder
from workbench.streaming.exact import stream_exact
from workbench.streaming.quant import keep_mask

S, W = 2, 12  # a small cache, so that the 40-token stream evicts for most of its steps


@pytest.fixture(scope="module")
def ids():
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(7, 263, (40,), generator=generator)
    tokens[0] = 1  # BOS
    return tokens


@pytest.fixture(scope="module")
def plain(tiny_llama, ids):
    return stream_nll(tiny_llama, ids, Sinks(S, W), fast=False, progress=False)


class RecordingDecoder(LlamaDecoder):
    """Records, per step and layer, the full-precision K/V of the token read (before any quantiser) and what
    the query attended to: the rotated keys (`scores`) and the values (`mix`)."""

    def __init__(self, model):
        super().__init__(model)
        self.new, self.read_keys, self.read_values = [], [], []

    def forward(self, ids, attend):
        def recording(layer, q, k, v):
            self.new.append((k.clone(), v.clone()))
            return attend(layer, q, k, v)
        return super().forward(ids, recording)

    def scores(self, q, keys):
        self.read_keys.append(keys.clone())
        return super().scores(q, keys)

    def mix(self, scores, values):
        self.read_values.append(values.clone())
        return super().mix(scores, values)


def cached_positions(t):
    """Text positions a Sinks(S, W) cache holds while token t is read (the token itself among them)."""
    return list(range(t + 1)) if t < W else list(range(S)) + list(range(t - (W - S - 1), t + 1))


def expected_reads(decoder, quant, keep, t, layer):
    """quantize_kv_tensor of the full-precision cache at step t, from the recorded new K/V (the definition)."""
    n_layers = len(decoder.layers)
    positions = cached_positions(t)
    k = torch.cat([decoder.new[p * n_layers + layer][0] for p in positions], dim=1)  # [KV, n, d] before RoPE
    v = torch.cat([decoder.new[p * n_layers + layer][1] for p in positions], dim=1)
    kept = None if keep is None else keep[positions][None]
    (key_granularity, key_group), (value_granularity, value_group) = quant.plans()

    def q(x, granularity, group):
        return quantize_kv_tensor(x.transpose(0, 1)[None], quant.bits, granularity, group, kept)[0].transpose(0, 1)

    cos, sin = decoder.rope(torch.arange(len(positions)))
    if quant.rope == "pre":
        keys = decoder.rotate(q(k, key_granularity, key_group), cos, sin)
    else:
        keys = q(decoder.rotate(k, cos, sin), key_granularity, key_group)
    return keys, q(v, value_granularity, value_group), k, v, positions


# -- what every step reads is the definition ---------------------------------------------------------


@pytest.mark.parametrize("quant", [
    KVCacheQuant(bits=3, keep="bos"),                                    # on write (per-token, keys before RoPE)
    KVCacheQuant(bits=2, keep="first:3", granularity="per-channel"),     # statistics over the cache at each step
    KVCacheQuant(bits=2, keep="0,5", granularity="kivi", group=4),       # keys per channel in groups, values per token
    KVCacheQuant(bits=3, keep="bos", rope="post", group=8),              # keys as rotated at their current slot
], ids=lambda q: q.label())
def test_each_step_reads_quantize_kv_tensor_of_the_cache_with_kept_tokens_bit_identical(tiny_llama, ids, quant):
    decoder = RecordingDecoder(tiny_llama)
    quantizer = quant.bind(tiny_llama, ids)
    with torch.no_grad():
        stream_exact(decoder, ids, Sinks(S, W), progress=False, quantizer=quantizer)
    n_layers = len(decoder.layers)
    assert len(decoder.read_values) == (len(ids) - 1) * n_layers
    keep = quantizer.keep
    for t in (1, W - 1, W, W + 7, len(ids) - 2):  # before, at and well after the first eviction
        for layer in range(n_layers):
            keys, values, k, v, positions = expected_reads(decoder, quant, keep, t, layer)
            assert torch.equal(decoder.read_values[t * n_layers + layer], values)
            assert torch.equal(decoder.read_keys[t * n_layers + layer], keys)
            kept = [slot for slot, p in enumerate(positions) if keep[p]]
            assert kept, "every step here holds a kept token"
            assert torch.equal(decoder.read_values[t * n_layers + layer][:, kept], v[:, kept])  # full precision
            cos, sin = decoder.rope(torch.arange(len(positions)))
            assert torch.equal(decoder.read_keys[t * n_layers + layer][:, kept], decoder.rotate(k, cos, sin)[:, kept])
            others = [slot for slot in range(len(positions)) if slot not in kept]
            if others:  # (first:3 at t = 1 keeps the whole cache)
                assert not torch.equal(decoder.read_values[t * n_layers + layer][:, others], v[:, others])


def test_keep_everything_is_the_full_precision_cache_and_16_bits_is_close(tiny_llama, ids, plain):
    everything = stream_nll(tiny_llama, ids, Sinks(S, W), fast=False, progress=False,
                            kv_quant=KVCacheQuant(bits=2, keep=f"first:{len(ids)}", granularity="per-channel"))
    np.testing.assert_array_equal(everything.nll, plain.nll)  # bit for bit
    sixteen = stream_nll(tiny_llama, ids, Sinks(S, W), fast=False, progress=False, kv_quant=KVCacheQuant(bits=16))
    np.testing.assert_allclose(sixteen.nll, plain.nll, atol=1e-4, rtol=0)
    two = stream_nll(tiny_llama, ids, Sinks(S, W), fast=False, progress=False, kv_quant=KVCacheQuant(bits=2))
    assert np.abs(two.nll - plain.nll).max() > 1e-2  # 2 bits is not a no-op


def test_the_fast_path_reads_the_same_quantised_cache_as_the_exact_path(tiny_llama, ids):
    for quant in (KVCacheQuant(bits=3), KVCacheQuant(bits=2, keep="bos", group=8)):
        exact = stream_nll(tiny_llama, ids, Sinks(S, W), fast=False, progress=False, kv_quant=quant)
        fast = stream_nll(tiny_llama, ids, Sinks(S, W), fast=True, chunk=8, progress=False, kv_quant=quant)
        assert fast.path == "fast"
        np.testing.assert_allclose(fast.nll, exact.nll, atol=1e-4, rtol=0)


def test_dense_with_post_rope_keys_is_the_one_pass_quantize_kv(tiny_llama, ids):
    # Under Dense slot = text position, so a post-RoPE cache holds what hook_rot_k sees in one pass.
    intervention = QuantizeKV(bits=3, keep="bos")
    with torch.no_grad(), hooked(tiny_llama, intervention, ids[None]):
        one_pass = token_nll(tiny_llama(ids[None]), ids[None])[0].numpy()
    stream = stream_nll(tiny_llama, ids, Dense(), fast=False, progress=False,
                        kv_quant=KVCacheQuant(bits=3, keep="bos", rope="post"))
    np.testing.assert_allclose(stream.nll, one_pass, atol=1e-4, rtol=0)
    assert KVCacheQuant.of("quantize-kv:bits=3,keep=bos") == KVCacheQuant(bits=3, keep="bos")


def test_keep_masks_follow_text_positions_and_auto_sinks_are_detected(tiny_llama, ids):
    assert keep_mask(KVCacheQuant(2, "bos").policy, tiny_llama, ids).nonzero().flatten().tolist() == [0]
    assert keep_mask(KVCacheQuant(2, "first:3").policy, tiny_llama, ids).sum() == 3
    assert keep_mask(KVCacheQuant(2).policy, tiny_llama, ids) is None
    auto = keep_mask(KVCacheQuant(2, "auto:0.01").policy, tiny_llama, ids)
    assert auto.shape == (len(ids),) and auto.any()


# -- sweeps and rows -----------------------------------------------------------------------------------


def test_stream_policies_crosses_policies_with_quantisers_and_shares_each_prefix(tiny_llama, ids):
    quants = [None, KVCacheQuant(2), KVCacheQuant(2, "bos")]
    res = streaming.stream_policies(tiny_llama, ids, [Sinks(S, W), Window(W)], kv_quant=quants, chunk=8,
                                    progress=False)
    table = res.filter(metric="perplexity").df
    assert len(table) == 6
    assert sorted(table["kv_keep"].fillna("-")) == ["-", "-", "bos", "bos", "none", "none"]
    assert set(table["intervention"]) == {"none", "kv-cache kv2 per-token keep=none", "kv-cache kv2 per-token keep=bos"}
    assert res.provenance["kv_quant"] == [None, "kv2 per-token keep=none", "kv2 per-token keep=bos"]
    for quant in quants:  # the shared prefix changes no number
        alone = stream_nll(tiny_llama, ids, Sinks(S, W), chunk=8, progress=False, kv_quant=quant)
        row = table[(table.policy == "sinks") & (table.kv_keep.fillna("-") == (quant.keep if quant else "-"))]
        assert row["value"].iloc[0] == pytest.approx(np.exp(np.mean(alone.nll)), rel=1e-5)


def test_cli_stream_with_a_quantised_cache(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 4)
    out = tmp_path / "kv.json"
    assert cli.main(["stream", "--model", "tiny-llama", "--text-file", str(text), "--policy", "sinks", "--window", "32",
                     "--kv-bits", "none", "3", "--kv-keep", "none", "bos", "--max-tokens", "120",
                     "--json", str(out)]) == 0
    table = Results.load(out).filter(metric="perplexity").df
    assert sorted(table["kv_bits"].fillna(0).astype(int)) == [0, 3, 3] and "kv3 per-token keep=bos" in capsys.readouterr().out


# -- bad input: one clear error each -------------------------------------------------------------------


@pytest.mark.parametrize("make, message", [
    (lambda: KVCacheQuant(bits=0), "allowed 1..16"),
    (lambda: KVCacheQuant(bits=17), "allowed 1..16"),
    (lambda: KVCacheQuant(bits=2.5), "bits must be an integer in 1..16"),
    (lambda: KVCacheQuant(bits=2, keep="first:0"), "first:N needs a whole number"),
    (lambda: KVCacheQuant(bits=2, keep="nonsense:1"), "cannot read keep='nonsense:1'"),
    (lambda: KVCacheQuant(bits=2, granularity="per-head"), "use one of per-token, per-channel, kivi"),
    (lambda: KVCacheQuant(bits=2, rope="middle"), "use pre"),
    (lambda: KVCacheQuant(bits=2, keys=False, values=False), "quantise nothing"),
    (lambda: KVCacheQuant(bits=2, group=0), "group must be a positive integer"),
])
def test_bad_quantiser_parameters_are_clear_errors(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_bad_quantisers_for_this_model_text_or_path_are_clear_errors(tiny_llama, ids):
    with pytest.raises(InputError, match="group = 5 does not divide d_head = 16"):
        stream_nll(tiny_llama, ids, Sinks(S, W), progress=False, kv_quant=KVCacheQuant(2, group=5))
    with pytest.raises(InputError, match="sink position 99 is outside the sequence"):
        stream_nll(tiny_llama, ids, Sinks(S, W), progress=False, kv_quant=KVCacheQuant(2, keep="0,99"))
    with pytest.raises(InputError, match="the fast chunked path quantises each token once"):
        stream_nll(tiny_llama, ids, Sinks(S, W), progress=False, kv_quant=KVCacheQuant(2, granularity="kivi"))
    with pytest.raises(InputError, match="rope=post quantises each key as rotated at its current slot"):
        streaming.stream_policies(tiny_llama, ids, [Sinks(S, W)], progress=False, kv_quant=KVCacheQuant(2, rope="post"))
    with pytest.raises(InputError, match="holds no KV cache"):
        stream_nll(tiny_llama, ids, Recompute(W), progress=False, kv_quant=KVCacheQuant(2))
    with pytest.raises(InputError, match="needs a KVCacheQuant or a quantize-kv intervention"):
        stream_nll(tiny_llama, ids, Sinks(S, W), progress=False, kv_quant="mask-sink")


@pytest.mark.parametrize("args, message", [
    (["--kv-keep", "bos"], "--kv-keep sets up a quantised KV cache: add --kv-bits"),
    (["--kv-bits", "2", "--kv-granularity", "per-channel"], "Use the exact token-by-token path (--exact"),
    (["--kv-bits", "x"], "bits must be an integer in 1..16, got 'x'"),
    (["--kv-bits", "2", "--policy", "recompute"], "holds no KV cache"),
])
def test_cli_bad_quantiser_is_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch, args, message):
    loaded = []
    monkeypatch.setattr("workbench.cli.stream.load_model", lambda a: loaded.append(a) or 1 / 0)
    assert cli.main(["stream", "--model", "tiny-llama", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sinkbench: error:") and message in err and "Traceback" not in err
    assert not loaded


def test_cli_checks_the_output_path_before_loading_the_model(tmp_path, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr("workbench.cli.stream.load_model", lambda a: loaded.append(a) or 1 / 0)
    (tmp_path / "out.json").mkdir()
    for bad, message in ((tmp_path / "out.json", "is a directory"), (tmp_path / "out.txt", "unknown result format")):
        assert cli.main(["stream", "--model", "tiny-llama", "--json", str(bad)]) == 2
        assert message in capsys.readouterr().err
    assert not loaded


# -- the registered figures ------------------------------------------------------------------------------


def test_quantisation_recipes_draw_bits_curves_and_activation_bars(fake_corpus, tmp_path):
    import pandas as pd

    from workbench import gallery

    done = gallery.build(["quant-kv-bits", "quant-activations"], out=tmp_path, model="tiny-llama", quick=True,
                         log=lambda _: None)
    assert [d["name"] for d in done] == ["quant-kv-bits", "quant-activations"]
    kv = pd.read_csv(tmp_path / "quant-kv-bits.csv")
    assert sorted(zip(kv["keep"], kv["bits"])) == [("bos", 2), ("bos", 4), ("none", 2), ("none", 4)]
    assert kv.loc[kv["keep"] == "bos", "d_sink"].notna().all() and kv.loc[kv["keep"] == "none", "d_sink"].isna().all()
    acts = pd.read_csv(tmp_path / "quant-activations.csv")
    assert sorted(zip(acts["granularity"], acts["keep"])) == [("per-tensor", "bos"), ("per-tensor", "none"),
                                                              ("per-token", "bos"), ("per-token", "none")]
    assert (acts["perplexity"] > 1).all() and (tmp_path / "quant-activations.png").stat().st_size > 0
    assert "D_sink" in done[0]["caption"] and "tiny-llama" in done[1]["caption"]
