"""The bundled models: bridge == plain transformers (eager), losses agree, BOS where provenance says."""

import pytest
import torch

from workbench import zoo
from workbench.core import data
from workbench.experiment import evaluate

# fp32 on the CPU: the bridge reimplements attention with the same ops as HF eager; measured max |diff| 0.0
PARITY_ATOL = 1e-4


@pytest.mark.parametrize("fixture", ["smollm2", "gemma3"])
def test_causal_bridge_logits_and_loss_equal_hf(fixture, request):
    bridge = request.getfixturevalue(fixture)
    name = zoo.info(bridge).name
    hf, _ = zoo.hf_reference(name)
    tokens = data.corpus_windows(bridge, "austen", window=64, n_windows=2).tensor()
    with torch.no_grad():
        ours = bridge(tokens)
        ref = hf(tokens, labels=tokens)
    assert (ours - ref.logits).abs().max().item() <= PARITY_ATOL
    ds = data.corpus_windows(bridge, "austen", window=64, n_windows=2)
    assert evaluate(bridge, ds, progress=False).value("loss") == pytest.approx(ref.loss.item(), abs=1e-5)


def test_minilm_hidden_states_and_logits_equal_hf(minilm):
    from transformers import BertModel

    hf_mlm, _ = zoo.hf_reference("minilm-l6")
    plain = BertModel.from_pretrained(zoo.model_dir("minilm-l6"), attn_implementation="eager").eval()
    tokens = data.from_text(minilm, "Attention sinks soak up attention.", window=32).tensor()
    with torch.no_grad():
        logits, cache = minilm.run_with_cache(tokens, names_filter="blocks.5.hook_resid_post")
        assert (logits - hf_mlm(tokens).logits).abs().max().item() <= PARITY_ATOL
        hidden = plain(tokens).last_hidden_state
    assert (cache["blocks.5.hook_resid_post"] - hidden).abs().max().item() <= PARITY_ATOL


def test_position_zero_holds_what_the_provenance_says(smollm2, gemma3, minilm):
    for bridge, key, expected in ((smollm2, "bos", "<|im_start|>"), (gemma3, "bos", "<bos>"),
                                  (minilm, "cls", "[CLS]")):
        ds = data.corpus_windows(bridge, "austen", window=32, n_windows=3)
        tok = zoo.info(bridge).tokenizer
        assert all(seq[0] == ds.special_ids[key] for seq in ds.sequences)
        assert tok.convert_ids_to_tokens(int(ds.sequences[0][0])) == expected
        bare = data.corpus_windows(bridge, "austen", window=32, n_windows=3, prepend_bos=False)
        assert bare.special_ids == {} and all(seq[0] != ds.special_ids[key] for seq in bare.sequences)


def test_catalogue_matches_the_loaded_models(smollm2, gemma3, minilm):
    for bridge in (smollm2, gemma3, minilm):
        info = zoo.info(bridge)
        card = zoo.BUNDLED[info.name]
        assert (info.n_layers, info.n_heads, info.n_kv_heads) == (card.n_layers, card.n_heads, card.n_kv_heads)
        hf = bridge.original_model
        params = hf.bert if info.name == "minilm-l6" else hf
        counted = sum(p.numel() for p in params.parameters())
        pooler = 384 * 384 + 384  # the BertModel checkpoint's pooler, unused by the MLM adapter
        assert counted + (pooler if info.name == "minilm-l6" else 0) == card.n_params
    assert zoo.info(gemma3).layer_types[5] == "full_attention" and zoo.info(gemma3).sliding_window == 512


def test_reload_from_cache_verifies_the_recorded_checksum():
    manifest = zoo.verify("smollm2-135m", full=True)
    assert manifest["source_sha256"] == zoo.BUNDLED["smollm2-135m"].source_sha256
    fresh = zoo.load("smollm2-135m", fresh=True)
    assert zoo.info(fresh).weights_sha256 == manifest["weights_sha256"]
