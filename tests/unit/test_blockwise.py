"""Blockwise attention (workbench.attention) on tiny random models: the same logits, patterns and edits as the
full path, block by block, with the block's query offset known to the hooks; and its guard rails."""

import dataclasses
import sys

import pytest
import torch

from workbench import attention, zoo
from workbench.attention import keys as attention_keys
from workbench.core import sites
from workbench.core.errors import InputError
from workbench.passes import PassContext

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = ["tiny-llama", "tiny-gemma3", "tiny-bert"]
T = 96  # > 8 x tiny-gemma3's sliding window of 8; < the tiny models' context of 256
BLOCKS = [1, 7, 64, T]


def tokens_for(model, n=2, length=T, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(7, 250, (n, length), generator=generator)
    tokens[:, 0] = zoo.info(model).bos_token_id or zoo.info(model).cls_token_id or 1
    return tokens


def images_for(model, n=2, seed=0):
    model_info = zoo.info(model)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, model_info.num_channels, *model_info.image_size, generator=generator)


def run_collecting(model, inputs, suffixes=("attn.hook_pattern",), block=None):
    """Logits and, per hook name, the list of (QueryBlock or None, tensor) it fired with."""
    seen: dict[str, list] = {}

    def grab(name):  # keyed by the name asked for: hook.name may be the canonical one behind an alias
        def fn(tensor, hook):
            seen.setdefault(name, []).append((attention.current_block(), tensor.detach().clone()))
        return fn

    names = [sites.hook(layer, s) for layer in range(len(model.blocks)) for s in suffixes]
    with torch.no_grad(), model.hooks(fwd_hooks=[(name, grab(name)) for name in names]):
        if block is None:
            return model(inputs), seen
        with attention.blockwise(model, block=block):
            return model(inputs), seen


def assembled(fired, dim=2):
    """The full-length tensor from its blocks, after checking the blocks tile the queries in order."""
    blocks = [b for b, _ in fired]
    assert blocks[0].start == 0 and blocks[-1].last
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    return torch.cat([t for _, t in fired], dim=dim)


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def scaled_diff(a, b):
    """|a - b| relative to the size of b where b exceeds 1 (hook_z of an unnormalised toy reaches ~4, where
    fp32's spacing is 5e-7)."""
    return max_diff(a, b) / max(1.0, b.float().abs().max().item())


# --------------------------------------------------------------------------------------------------
# Exactness
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEXT)
def test_blockwise_logits_and_patterns_equal_the_full_path(name):
    model = zoo.load(name)
    tokens = tokens_for(model)
    suffixes = ("attn.hook_pattern", "attn.hook_z") + (("attn.hook_attn_scores",) if name != "tiny-bert" else ())
    full, full_seen = run_collecting(model, tokens, suffixes)
    for block in BLOCKS:
        logits, seen = run_collecting(model, tokens, suffixes, block=block)
        assert max_diff(logits, full) <= 1e-6, (name, block)
        for hook_name, fired in seen.items():
            size = min(block, T)
            assert all(b.size == size for b, _ in fired[:-1]) and len(fired) == -(-T // size)
            dim = 1 if hook_name.endswith("hook_z") else 2
            whole = assembled(fired, dim)
            reference = full_seen[hook_name][0][1]
            assert whole.shape == reference.shape
            if hook_name.endswith("hook_attn_scores"):  # masked keys hold the dtype's minimum on both paths
                assert torch.equal(whole <= -1e30, reference <= -1e30)
                visible = reference > -1e30  # pre-softmax: 1e-7 upstream (one-row kernels) becomes ~2e-6 here
                assert max_diff(whole[visible], reference[visible]) <= 1e-5, (name, block)
            else:
                assert scaled_diff(whole, reference) <= 1e-6, (name, block, hook_name)


@pytest.mark.parametrize("name", TEXT)
def test_blockwise_logits_equal_plain_transformers_eager(name):
    model = zoo.load(name)
    tokens = tokens_for(model)
    hf, _ = zoo.hf_reference(name)
    with torch.no_grad():
        expected = hf(tokens).logits
        for block in (1, 7):
            with attention.blockwise(model, block=block):
                assert max_diff(model(tokens), expected) <= 1e-4


def test_gemma3_sliding_window_is_kept_in_every_block(tiny_gemma):
    window = zoo.info(tiny_gemma).sliding_window
    _, seen = run_collecting(tiny_gemma, tokens_for(tiny_gemma), block=7)
    pattern = assembled(seen[sites.pattern(0)])  # layer 0 is a sliding layer
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    outside = (k > q) | (q - k >= window)
    assert window == 8 and pattern[..., outside].abs().max() == 0
    assert pattern[..., ~outside].min() > 0
    assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-6)


@pytest.mark.parametrize("name", TEXT)
def test_a_padding_mask_is_rebuilt_per_block(name):
    model = zoo.load(name)
    tokens = tokens_for(model, length=30)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[0, :3] = 0  # left padding
    mask[1, 25:] = 0  # right padding
    with torch.no_grad():
        expected = model(tokens, attention_mask=mask)
        with attention.blockwise(model, block=7):
            assert max_diff(model(tokens, attention_mask=mask), expected) <= 1e-6


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_weight_a_hook_puts_on_masked_keys_counts_as_on_the_full_path(name):
    model = zoo.load(name)
    tokens = tokens_for(model, length=40)

    def uniform_over_every_key(tensor, hook):  # future keys and keys beyond the window included
        return torch.full_like(tensor, 1.0 / tensor.shape[-1])

    with torch.no_grad(), model.hooks(fwd_hooks=[(sites.pattern(0), uniform_over_every_key)]):
        expected = model(tokens)
        with attention.blockwise(model, block=7):
            assert max_diff(model(tokens), expected) <= 1e-6


def test_qwen2_blockwise_equals_the_full_path_and_transformers():
    import copy

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from workbench.zoo.tiny import tiny_tokenizer

    boot = sys.modules["workbench.zoo.load"]._boot
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=256, vocab_size=len(tokenizer),
                             attn_implementation="eager", pad_token_id=0, bos_token_id=1, eos_token_id=2)
        hf = Qwen2ForCausalLM(config).eval()
    hf.config.architectures = ["Qwen2ForCausalLM"]
    reference = copy.deepcopy(hf)
    model = boot(hf, tokenizer, "tiny-qwen2", "cpu", torch.float32)
    assert model.blocks[0].attn.original_component.q_proj.bias is not None  # Qwen2's q/k/v biases
    tokens = torch.randint(7, 250, (2, 50), generator=torch.Generator().manual_seed(1))
    full, full_seen = run_collecting(model, tokens)
    with torch.no_grad():
        expected = reference(tokens).logits
    for block in (1, 7, 64):
        logits, seen = run_collecting(model, tokens, block=block)
        assert max_diff(logits, full) <= 1e-6 and max_diff(logits, expected) <= 1e-4
        assert max_diff(assembled(seen[sites.pattern(1)]), full_seen[sites.pattern(1)][0][1]) <= 1e-6


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-deit"])
def test_vision_transformers_blockwise(name):
    model = zoo.load(name)
    pixels = images_for(model)
    n = zoo.info(model).n_ctx  # [CLS] (+ [DIST]) + patches
    full, full_seen = run_collecting(model, pixels, ("attn.hook_pattern", "attn.hook_z"))
    hf, _ = zoo.hf_reference(name)
    with torch.no_grad():
        expected = hf(pixel_values=pixels).logits
    for block in (1, 7, 64, n):
        logits, seen = run_collecting(model, pixels, ("attn.hook_pattern", "attn.hook_z"), block=block)
        assert max_diff(logits, full) <= 1e-6 and max_diff(logits, expected) <= 1e-4
        for hook_name, fired in seen.items():
            dim = 1 if hook_name.endswith("hook_z") else 2
            assert scaled_diff(assembled(fired, dim), full_seen[hook_name][0][1]) <= 1e-6


def toy(variant, positional="absolute", seed=0):
    from workbench.toy.model import ToyConfig, ToyTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyTransformer(ToyConfig(attention=variant, d_vocab=31, n_ctx=64, d_model=32, n_layers=2,
                                         n_heads=2, positional=positional)).eval()
    if variant in ("sink-logit", "kv-bias"):  # move the extra slot's parameters off their initial values
        with torch.no_grad():
            for block in model.blocks:
                for p in (getattr(block.attn, "sink_logit", None), getattr(block.attn, "k_bias", None)):
                    if p is not None:
                        p.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return model


TOYS = [("softmax", "absolute"), ("softmax", "rotary"), ("softmax1", "absolute"), ("sigmoid", "absolute"),
        ("relu", "absolute"), ("gated", "rotary"), ("sink-logit", "absolute"), ("kv-bias", "absolute")]


@pytest.mark.parametrize("variant, positional", TOYS)
def test_toy_variants_blockwise(variant, positional):
    model = toy(variant, positional)
    tokens = torch.randint(0, 31, (2, 48), generator=torch.Generator().manual_seed(0))
    suffixes = ("attn.hook_pattern", "attn.hook_z") + (("attn.hook_sink",) if model.cfg.variant.extra_slot else ()) \
        + (("attn.hook_gate",) if variant == "gated" else ())
    full, full_seen = run_collecting(model, tokens, suffixes)
    for block in (1, 7, 64, 48):
        logits, seen = run_collecting(model, tokens, suffixes, block=block)
        assert max_diff(logits, full) <= 1e-6, (variant, block)
        for hook_name, fired in seen.items():
            dim = 1 if hook_name.endswith(("hook_z", "hook_gate")) else 2
            assert scaled_diff(assembled(fired, dim), full_seen[hook_name][0][1]) <= 1e-6, (variant, block, hook_name)


# --------------------------------------------------------------------------------------------------
# Edits through the blocks
# --------------------------------------------------------------------------------------------------


def block_edit_hooks(edit, model, ctx):
    """An AttentionEdit applied at hook_pattern block by block: the edit sees the block's pattern and a view
    of the context whose query rows are the block's (what the mechanism does once it reads the offset)."""
    heads = list(edit.head_ids(model))
    hooks = []
    for layer in edit.layer_ids(model):
        def on_pattern(tensor, hook, layer=layer):
            block = attention.block_of(tensor.shape[-2])
            view = dataclasses.replace(ctx, queries=block.take(ctx.queries))
            new, extra = edit.edit(tensor[:, heads], view, layer)
            assert extra is None
            out = tensor.clone()
            out[:, heads] = new.to(out.dtype)
            return out
        hooks.append((sites.pattern(layer), on_pattern))
    return hooks


@pytest.mark.parametrize("name", TEXT)
@pytest.mark.parametrize("spec", ["mask-sink", "scale-sink:gamma=0.5", "scale-sink:gamma=2,heads=1,3,layers=1"])
def test_attention_edits_through_the_blocks_give_the_full_path_logits(name, spec):
    import interventions as iv
    from workbench.experiment import hooked

    model = zoo.load(name)
    tokens = tokens_for(model, length=40)
    with torch.no_grad(), hooked(model, spec, tokens):  # the catalogue's own hooks, full path
        expected = model(tokens)
    edit = iv.parse(spec)
    ctx = PassContext.of(model, tokens, edit.sink_spec())
    with torch.no_grad():
        base = model(tokens)
        assert max_diff(expected, base) > 1e-4  # the edit does something (tiny BERT: ~1/40 on the sink)
        for block in (1, 7, 64, 40):
            with attention.blockwise(model, block=block), model.hooks(fwd_hooks=block_edit_hooks(edit, model, ctx)):
                assert max_diff(model(tokens), expected) <= 1e-5, (name, spec, block)


# --------------------------------------------------------------------------------------------------
# The seam
# --------------------------------------------------------------------------------------------------


def test_the_seam_is_removed_on_exit_even_after_an_error(tiny_llama):
    tokens = tokens_for(tiny_llama, length=16)
    with torch.no_grad():
        before = tiny_llama(tokens)
        with pytest.raises(RuntimeError, match="boom"), attention.blockwise(tiny_llama, block=4):
            assert attention.active(tiny_llama) is not None
            raise RuntimeError("boom")
        assert attention.active(tiny_llama) is None
        for block in tiny_llama.blocks:
            assert "forward" not in block.attn.__dict__
            assert "forward" not in block.attn.original_component.__dict__
        assert not tiny_llama.original_model.base_model._forward_pre_hooks
        assert torch.equal(tiny_llama(tokens), before)  # the default path, bit for bit
    assert attention.current_block() is None


def test_no_t_by_t_mask_is_built_inside_blockwise(tiny_llama):
    seen = []
    handle = tiny_llama.blocks[0].attn.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True)
    try:
        with torch.no_grad():
            tiny_llama(tokens_for(tiny_llama, length=32))
            with attention.blockwise(tiny_llama, block=8, fuse=False) as run:
                tiny_llama(tokens_for(tiny_llama, length=32))
            with attention.blockwise(tiny_llama, block=8) as fused:
                tiny_llama(tokens_for(tiny_llama, length=32))
    finally:
        handle.remove()
    assert seen[0].shape == (2, 1, 32, 32) and seen[0].stride() != (0, 0, 0, 0)  # transformers' own mask
    for mask in seen[1:]:
        assert mask.shape == (2, 1, 32, 32) and mask.stride() == (0, 0, 0, 0)  # zero bytes
    assert run.n_blocks == 2 * 4 and run.largest_block == 8 and run.n_fused == 0
    assert fused.n_blocks == 0 and fused.n_fused == 2  # nothing reads a pattern: no block builds one


def test_automatic_blocks_follow_the_budget(tiny_llama):
    tokens = tokens_for(tiny_llama, n=1, length=200)
    heads = zoo.info(tiny_llama).n_heads
    budget = 4 * heads * 200 * 4 * 10  # ten query rows of live tensors
    full, _ = run_collecting(tiny_llama, tokens)
    with torch.no_grad(), attention.blockwise(tiny_llama, budget=budget, fuse=False) as run:
        logits = tiny_llama(tokens)
    assert run.largest_block == 10 and run.n_blocks == 2 * 20
    assert max_diff(logits, full) <= 1e-6


def test_plan_keeps_the_full_path_when_it_fits_and_goes_blockwise_when_not(tiny_llama):
    heads = zoo.info(tiny_llama).n_heads
    assert attention.full_pattern_bytes(tiny_llama, 2, 100) == 2 * 2 * heads * 100 * 100 * 4 + 100 * 100 * 4
    assert attention.plan(tiny_llama, 2, 100) is None
    assert attention.plan(tiny_llama, 2, 100, block=16) == 16
    small = 100_000  # bytes: the full pattern of T = 200 (1.6 MB) does not fit
    chosen = attention.plan(tiny_llama, 1, 200, budget=small)
    assert chosen == small // (4 * heads * 200 * 4)
    with pytest.raises(InputError) as info:
        attention.plan(tiny_llama, 1, 200, block="full", budget=small)
    message = str(info.value)
    assert "T = 200" in message and "MB" in message and "--attention-block" in message and "attention_block=" in message
    with attention.path(tiny_llama, tokens_for(tiny_llama, n=1, length=200), budget=small) as run:
        assert attention.active(tiny_llama) is run and run.block == chosen
    with attention.path(tiny_llama, tokens_for(tiny_llama, n=1, length=20)):
        assert attention.active(tiny_llama) is None


def test_the_policy_is_what_the_attention_block_option_means(tiny_llama):
    tokens = tokens_for(tiny_llama, n=1, length=200)
    with attention.policy(tiny_llama, block="8"):
        assert attention.active(tiny_llama).block == 8
        with attention.path(tiny_llama, tokens):  # an open blockwise wins
            assert attention.active(tiny_llama).block == 8
    assert attention.active(tiny_llama) is None
    with attention.policy(tiny_llama, block="auto", budget=100_000), attention.path(tiny_llama, tokens) as run:
        assert run is not None and run.block < 200
    with attention.policy(tiny_llama, block="full", budget=100_000):
        with pytest.raises(InputError, match="needs about .* over the attention memory budget"):
            attention.path(tiny_llama, tokens)
        with attention.path(tiny_llama, tokens[:, :20]) as run:
            assert run is None  # fits: the full path
    with attention.path(tiny_llama, tokens, budget=100_000) as run:  # the "full" policy ended with its context
        assert run is not None
    with pytest.raises(InputError, match="'full' or 'auto'; got 'sometimes'"):
        with attention.policy(tiny_llama, block="sometimes"):
            pass
    with pytest.raises(InputError, match="positive size"):
        with attention.policy(tiny_llama, block="full", budget="lots"):
            pass


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", True])
def test_a_bad_block_size_is_one_clear_error(tiny_llama, bad):
    with pytest.raises(InputError, match=r"attention block size must be an integer >= 1.*got"):
        with attention.blockwise(tiny_llama, block=bad):
            pass
    assert attention.active(tiny_llama) is None


def test_a_sequence_beyond_the_context_is_one_clear_error(tiny_llama):
    with pytest.raises(InputError, match=r"T = 300 tokens exceed the context of tiny-llama: allowed 1\.\.256"):
        attention.plan(tiny_llama, 1, 300)
    with pytest.raises(InputError, match=r"T = 300 .* allowed 1\.\.256"):
        with torch.no_grad(), attention.blockwise(tiny_llama, block=64):
            tiny_llama(tokens_for(tiny_llama, n=1, length=300))


@pytest.mark.parametrize("bad", ["lots", "-1G", 0, "1.5X"])
def test_a_bad_budget_is_one_clear_error(tiny_llama, bad, monkeypatch):
    with pytest.raises(InputError, match="positive size"):
        attention.plan(tiny_llama, 1, 10, budget=bad)
    monkeypatch.setenv(attention.BUDGET_ENV, "2G")
    assert attention.budget_bytes() == 2 << 30
    assert attention.parse_bytes("512M") == 512 << 20


def test_an_unknown_attention_is_refused_before_anything_is_installed(tiny_llama):
    class Other(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Module()])
            self.blocks[0].attn = torch.nn.Linear(2, 2)

    with pytest.raises(InputError, match="cannot run layer 0 .* Linear"):
        with attention.blockwise(Other(), block=4):
            pass


def test_a_process_wide_policy_reaches_every_model_without_one_of_its_own(tiny_llama):
    tokens = tokens_for(tiny_llama, n=1, length=50)
    with attention.policy(None, block=8):  # what `--attention-block 8` sets for a whole command
        with attention.path(tiny_llama, tokens) as run:
            assert run is not None and run.block == 8
        with attention.policy(tiny_llama, block="auto"), attention.path(tiny_llama, tokens) as run:
            assert run is None  # the model's own (auto: the full path fits) wins
    with attention.path(tiny_llama, tokens) as run:
        assert run is None  # the context ended
    with pytest.raises(InputError, match="got 0"):
        with attention.policy(None, block=0):
            pass


def test_a_pass_stopped_after_the_last_block_builds_no_logits_and_no_cache(tiny_llama):
    from workbench.passes import forward

    tokens = tokens_for(tiny_llama, n=2, length=30)
    seen = {}
    with torch.no_grad():
        full = forward(tiny_llama, tokens, [(sites.resid(1), lambda t, hook: seen.__setitem__("resid", t.clone()))])
        resid = forward(tiny_llama, tokens, stop_at_layer=len(tiny_llama.blocks))
    assert full.shape[-1] == zoo.info(tiny_llama).vocab_size
    torch.testing.assert_close(resid, seen["resid"], rtol=0, atol=0)  # the residual stream after the last block
    assert not tiny_llama.hook_dict["ln_final.hook_in"]._forward_hooks
    with torch.no_grad(), attention.blockwise(tiny_llama, block=8):
        out = tiny_llama.original_model(input_ids=tokens)
    assert out.past_key_values is None  # blockwise passes keep no KV cache (K, V of every layer)
    torch.testing.assert_close(out.logits, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_a_nested_blockwise_keeps_the_causal_and_padding_masks(name):
    model = zoo.load(name)
    tokens = tokens_for(model, n=2, length=40)
    mask = torch.ones_like(tokens)
    mask[1, :5] = 0  # left padding in the second row
    with torch.no_grad():
        full = model.original_model(input_ids=tokens, attention_mask=mask).logits
        with attention.blockwise(model, block=8), attention.blockwise(model, block=3) as inner:
            nested = model.original_model(input_ids=tokens, attention_mask=mask).logits
    assert inner.n_blocks > 0
    torch.testing.assert_close(nested[0], full[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(nested[1, 5:], full[1, 5:], rtol=0, atol=1e-5)


def test_a_cache_handed_to_the_layers_as_cache_is_read_and_written_blockwise(tiny_llama):
    """transformers 5.2x passes the layer's KV cache as `cache=`; TransformerLens's _update_kv_cache reads
    `past_key_values`: the block forward hands it over, so a second step attends to the first step's keys."""
    from transformers import DynamicCache

    tokens = tokens_for(tiny_llama, n=1, length=30)
    hf = tiny_llama.original_model
    with torch.no_grad():
        full = hf(input_ids=tokens).logits
        with attention.blockwise(tiny_llama, block=4):
            cache = DynamicCache()
            hf(input_ids=tokens[:, :20], cache=cache, use_cache=True)
            assert cache.get_seq_length() == 20
            step = hf(input_ids=tokens[:, 20:], cache=cache, use_cache=True).logits
    torch.testing.assert_close(step, full[:, 20:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_a_pass_whose_pattern_no_hook_reads_runs_fused_with_the_full_path_logits(name):
    """No pattern where none is read: the layers run one fused kernel (tiny-gemma3's sliding-window layers,
    whose window is inside the keys, run the blocks), and hook_z still fires, once, on every query."""
    model = zoo.load(name)
    tokens = tokens_for(model)
    full, _ = run_collecting(model, tokens, suffixes=("attn.hook_z",))
    with torch.no_grad(), attention.blockwise(model, block=7) as run:
        logits, fired = run_collecting(model, tokens, suffixes=("attn.hook_z",))
    windowed = sum(1 for block in model.blocks
                   if getattr(block.attn.original_component, "sliding_window", None) is not None)
    assert run.n_fused == len(model.blocks) - windowed and run.n_fused > 0
    assert max_diff(logits, full) <= 1e-5
    for name_z, seen in fired.items():
        blocks = [block for block, _ in seen]
        assert all(b.is_whole for b in blocks) or all(b.size <= 7 for b in blocks), name_z


def test_the_key_mass_of_the_fused_path_equals_the_patterns(tiny_llama):
    """sum_{j in keys} A[q, j] from the kernel's logsumexp and the few key columns, and from a logsumexp
    computed per block of rows (what a device without that kernel does), equal the explicit pattern's."""
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 50, 8) for _ in range(3))
    keys = torch.zeros(2, 50, dtype=torch.bool)
    keys[:, 0] = True
    keys[1, 7] = True
    scores = (query @ key.transpose(-2, -1)) * 0.3
    scores = scores.masked_fill(torch.ones(50, 50, dtype=torch.bool).triu(1), float("-inf"))
    expected = (torch.softmax(scores, -1) * keys[:, None, None, :]).sum(-1)
    z, lse = attention_keys._fused(query, key, value, 0.3, True)
    assert (z - torch.softmax(scores, -1) @ value).abs().max() <= 1e-5
    state = attention.Blockwise(tiny_llama, 16, 1 << 20)
    weights = torch.softmax(scores, -1)[..., [0, 7]] * keys[:, None, None, [0, 7]]
    for given in (lse, None):
        mass, columns = attention_keys._key_weights(query, key, given, keys, 0.3, True, state, summed=True)
        assert (mass - expected).abs().max() <= 1e-6
        each, columns = attention_keys._key_weights(query, key, given, keys, 0.3, True, state, summed=False)
        assert columns.tolist() == [0, 7] and (each - weights).abs().max() <= 1e-6


def test_a_hook_on_the_pattern_keeps_the_blocks_and_the_sink_probe_sees_its_edit(tiny_llama):
    from workbench import probes

    ds = probes_windows(tiny_llama)

    def halve(pattern, hook):
        return pattern * 0.5

    edits = [(sites.hook(layer, "attn.hook_pattern"), halve) for layer in range(len(tiny_llama.blocks))]
    full = probes.sinks(tiny_llama, ds, progress=False, hooks=edits)
    plain = probes.sinks(tiny_llama, ds, progress=False)
    with attention.blockwise(tiny_llama, block=7) as run:
        blocked = probes.sinks(tiny_llama, ds, progress=False, hooks=edits)
    assert run.n_fused == 0 and run.n_blocks > 0
    checked = 0
    for a, b, c in zip(full.rows, blocked.rows, plain.rows):
        if a["metric"] == "first_token_attention":
            assert abs(a["value"] - b["value"]) <= 1e-6
            if a["layer"] == 0:  # (later layers read the edited residual stream)
                assert abs(a["value"] - 0.5 * c["value"]) <= 1e-6
                checked += 1
    assert checked == zoo.info(tiny_llama).n_heads


def probes_windows(model):
    from workbench.core import data

    generator = torch.Generator().manual_seed(1)
    sequences = [[zoo.info(model).bos_token_id, *torch.randint(7, 250, (39,), generator=generator).tolist()]
                 for _ in range(3)]
    return data.Dataset([torch.tensor(s).numpy() for s in sequences], "tokens", "random", {}, None)
