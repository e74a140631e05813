import json
import os
import subprocess
import sys
import time

import pytest
import torch

from workbench import zoo
from workbench.core.cache import sha256_file
from workbench.core.errors import InputError, ModelNotAvailable


def test_tiny_llama_matches_its_hf_model_and_reports_gqa(tiny_llama):
    info = zoo.info(tiny_llama)
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.group_size) == (2, 4, 2, 2)
    assert info.causal and info.positional == "rotary" and info.bos_token_id == 1
    hf, _ = zoo.hf_reference("tiny-llama")
    tokens = torch.tensor([[1, 40, 50, 60, 70, 80]])
    with torch.no_grad():
        assert torch.allclose(tiny_llama(tokens), hf(tokens).logits, atol=1e-5)


def test_tiny_models_are_seeded():
    first, _ = zoo.hf_reference("tiny-llama")
    again, _ = zoo.hf_reference("tiny-llama")
    other, _ = zoo.hf_reference("tiny-llama@1")
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(again.state_dict()[weight], first.state_dict()[weight])
    assert not torch.equal(other.state_dict()[weight], again.state_dict()[weight])
    with pytest.raises(InputError, match="seed"):
        zoo.load("tiny-llama@x")


def test_tiny_gemma_and_bert_describe_themselves(tiny_gemma, tiny_bert):
    gemma = zoo.info(tiny_gemma)
    assert gemma.layer_types == ["sliding_attention", "sliding_attention", "full_attention"]
    assert gemma.sliding_window == 8 and gemma.group_size == 4
    bert = zoo.info(tiny_bert)
    assert bert.family == "encoder" and not bert.causal
    assert bert.cls_token_id is not None and bert.sep_token_id is not None


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ModelNotAvailable) as err:
        zoo.load("smollm-135")
    for name in ("smollm2-135m", "minilm-l6", "gemma3-270m", "tiny-llama"):
        assert name in str(err.value)


def test_hf_id_without_network_fails_fast_with_a_clear_message():
    started = time.perf_counter()
    with pytest.raises(ModelNotAvailable, match="SINKBENCH_ONLINE"):
        zoo.load("someone/not-a-cached-model")
    assert time.perf_counter() - started < 10


def test_hf_id_offline_in_a_fresh_process_even_when_env_is_unset(tmp_path):
    """The offline switch must hold even when the user never set HF_HUB_OFFLINE themselves."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_HOME"] = str(tmp_path)
    code = "import workbench as wb\ntry:\n  wb.load('someone/not-cached')\nexcept wb.ModelNotAvailable as e:\n  print('OK', e)"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("OK"), out.stderr[-2000:]
    assert time.perf_counter() - started < 60  # interpreter + torch import; the load itself fails at once


def test_fetch_refuses_unknown_and_tiny_names():
    with pytest.raises(ModelNotAvailable):
        zoo.fetch("gpt-17")
    with pytest.raises(InputError, match="needs no fetch"):
        zoo.fetch("tiny-llama")


def test_catalogue_lists_bundled_models_with_shapes():
    rows = {r["name"]: r for r in zoo.catalogue()}
    assert set(zoo.BUNDLED) <= set(rows)
    assert (rows["smollm2-135m"]["layers"], rows["smollm2-135m"]["heads"], rows["smollm2-135m"]["kv_heads"]) == (30, 9, 3)
    assert rows["gemma3-270m"]["kv_heads"] == 1
    assert rows["tiny-llama"]["cached"] == "built on demand"


def _fake_cached_model(cache, name="smollm2-135m", payload=b"weights"):
    directory = cache / "models" / name
    directory.mkdir(parents=True)
    weights = directory / zoo.WEIGHTS
    weights.write_bytes(payload)
    stat = weights.stat()
    manifest = {"weights_sha256": sha256_file(weights), "weights_size": stat.st_size,
                "weights_mtime_ns": stat.st_mtime_ns}
    (directory / zoo.MANIFEST).write_text(json.dumps(manifest))
    return weights


def test_verify_accepts_intact_weights_and_refuses_a_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path))
    weights = _fake_cached_model(tmp_path)
    assert zoo.verify("smollm2-135m")["weights_sha256"] == sha256_file(weights)
    weights.write_bytes(b"weightz")  # same size, new mtime: the stamp no longer matches, so it re-hashes
    with pytest.raises(ModelNotAvailable, match="checksum mismatch.*models fetch smollm2-135m --force"):
        zoo.verify("smollm2-135m")
    with pytest.raises(ModelNotAvailable, match="checksum mismatch"):
        zoo.load("smollm2-135m", fresh=True)


def test_verify_full_rehashes_even_with_an_unchanged_stamp(tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path))
    weights = _fake_cached_model(tmp_path)
    stat = weights.stat()
    weights.write_bytes(b"WEIGHTS")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # forge the stamp
    zoo.verify("smollm2-135m")  # the cheap check trusts the stamp
    with pytest.raises(ModelNotAvailable, match="checksum mismatch"):
        zoo.verify("smollm2-135m", full=True)


def test_missing_model_names_the_command_that_fixes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="sinkbench models fetch gemma3-270m"):
        zoo.load("gemma3-270m", fresh=True)
    _fake_cached_model(tmp_path, "minilm-l6").unlink()
    with pytest.raises(ModelNotAvailable, match="missing.*fetch minilm-l6 --force"):
        zoo.verify("minilm-l6")


def test_cached_models_are_reused_and_handed_out_without_leftover_hooks(tiny_llama):
    tiny_llama.add_hook("blocks.0.attn.hook_pattern", lambda t, hook: t * 0)
    again = zoo.load("tiny-llama")
    assert again is tiny_llama
    tokens = torch.tensor([[1, 40, 50, 60]])
    hf, _ = zoo.hf_reference("tiny-llama")
    with torch.no_grad():
        assert torch.allclose(again(tokens), hf(tokens).logits, atol=1e-5)
