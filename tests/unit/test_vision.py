"""Image models: the zoo's ViTs and registers, image sets, probes and interventions on them, the trainer, bad input."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import interventions as iv
from workbench import experiment, probes, vision, zoo
from workbench.core import positions, sites
from workbench.core.errors import InputError, ModelNotAvailable
from workbench.probes.high_norm import mark_high_norm, patch_residual_norms
from workbench.probes.patches import otsu_split
from workbench.vision.presets import ViTTrainConfig
from workbench.vision.train import train_vit

TINY_TRAINING = ViTTrainConfig(image_size=16, patch_size=4, hidden_size=16, layers=1, heads=2, mlp_ratio=2,
                               registers=2, steps=4, batch_size=8, warmup=1, eval_images=16, eval_every=2,
                               checkpoint_every=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vit_reg():
    return zoo.load("tiny-vit-reg")


@pytest.fixture(scope="module")
def vit():
    return zoo.load("tiny-vit")


def shapes_for(model, n=6, seed=0, **kw):
    return vision.image_set(model, "shapes", n=n, seed=seed, **kw)


def grab(model, names, inputs, outer=()):
    """Run the model and return clones of the named activations."""
    seen = {}
    hooks = [(n, lambda t, hook, n=n: seen.setdefault(n, t.detach().clone())) for n in names]
    with torch.no_grad(), model.hooks(fwd_hooks=list(outer) + hooks):
        logits = model(inputs)
    return logits, seen


# --------------------------------------------------------------------------------------------------
# models, registers, trainer
# --------------------------------------------------------------------------------------------------


def test_trainer_is_deterministic_saves_safetensors_and_loads_back_through_the_zoo(tmp_path):
    first = train_vit(TINY_TRAINING, tmp_path / "a", threads=1, progress=False, log=lambda m: None)
    again = train_vit(TINY_TRAINING, tmp_path / "b", threads=1, progress=False, log=lambda m: None)
    other = train_vit(dataclasses.replace(TINY_TRAINING, seed=1), tmp_path / "c", threads=1, progress=False,
                      log=lambda m: None)
    manifest = {d: json.loads((tmp_path / d / zoo.MANIFEST).read_text())["weights_sha256"] for d in "abc"}
    assert manifest["a"] == manifest["b"] != manifest["c"]
    assert first["curve"] == [dict(e, seconds=f["seconds"]) for e, f in zip(again["curve"], first["curve"])]
    assert [e["step"] for e in first["curve"]] == [2, 4] and other["final_loss"] != first["final_loss"]
    assert (tmp_path / "a" / "model.safetensors").is_file()
    assert (tmp_path / "a" / "checkpoints" / "step-000002" / "model.safetensors").is_file()
    model = zoo.load(str(tmp_path / "a"))
    info = zoo.info(model)
    assert (info.family, info.n_registers, info.n_ctx, info.grid) == ("image-classifier", 2, 1 + 16 + 2, (4, 4))
    hf, _ = zoo.hf_reference(str(tmp_path / "a"))
    assert sum(p.numel() for p in hf.parameters()) == TINY_TRAINING.n_params
    images = shapes_for(model)
    with torch.no_grad():
        assert torch.equal(model(images.inputs()), hf(pixel_values=images.inputs()).logits)
    checkpoint = zoo.load(str(tmp_path / "a" / "checkpoints" / "step-000002"))
    assert zoo.info(checkpoint).n_registers == 2


def test_registers_are_appended_after_the_patches_and_discarded_at_the_output(vit_reg):
    info = zoo.info(vit_reg)
    images = shapes_for(vit_reg)
    last = f"blocks.{info.n_layers - 1}.hook_resid_post"
    logits, seen = grab(vit_reg, ["hook_embed", last], images.inputs())
    assert seen["hook_embed"].shape[1] == 1 + 16 + 2
    hf, _ = zoo.hf_reference("tiny-vit-reg")
    registers = hf.vit.embeddings.register_tokens[0]
    assert torch.allclose(seen["hook_embed"][:, -2:], registers.expand(len(images), -1, -1))
    # distinct at initialisation: equal registers would get equal gradients and stay one register repeated
    assert (registers[0] - registers[1]).norm() > 0.1 * registers.norm(dim=-1).min()

    def shake(positions_):
        def fn(t, hook):
            t = t.clone()
            t[:, positions_] += 10.0
            return t
        return fn

    with torch.no_grad(), vit_reg.hooks(fwd_hooks=[(last, shake([17, 18]))]):
        assert torch.equal(vit_reg(images.inputs()), logits)  # registers never reach the classifier
    with torch.no_grad(), vit_reg.hooks(fwd_hooks=[(last, shake([0]))]):
        assert not torch.allclose(vit_reg(images.inputs()), logits)  # [CLS] does


@pytest.mark.parametrize("name, prefix", [("tiny-vit", 1), ("tiny-deit", 2)])
def test_hf_vit_and_deit_directories_load_through_the_zoo(tmp_path, name, prefix):
    hf, _ = zoo.hf_reference(name)
    hf.save_pretrained(tmp_path / name)  # a plain HF checkpoint: config.json + model.safetensors, no processor
    model = zoo.load(str(tmp_path / name))
    info = zoo.info(model)
    assert (info.family, info.n_prefix, info.n_ctx, info.image_mean) == ("image-classifier", prefix, prefix + 16,
                                                                          (0.5, 0.5, 0.5))
    pixels = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(pixels), hf(pixel_values=pixels).logits)


def test_zoo_lists_the_trained_vits_and_asks_to_train_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "cache"))
    names = {row["name"]: row for row in zoo.catalogue()}
    assert names["shapes-vit-reg4"]["family"] == "image-classifier" and names["shapes-vit"]["cached"] is False
    with pytest.raises(ModelNotAvailable, match="sinkbench train-vit --preset shapes-vit-reg4"):
        zoo.load("shapes-vit-reg4")


def test_probes_agree_with_hf_eager_attention_on_vit_and_deit():
    for name in ("tiny-vit-reg", "tiny-deit"):
        model = zoo.load(name)
        images = shapes_for(model, n=5)
        res = probes.sinks(model, images, sink="cls", progress=False)
        maps = probes.image_attention(model, images, examples=0, progress=False)
        hf, _ = zoo.hf_reference(name)
        with torch.no_grad():
            attentions = hf(pixel_values=images.inputs(), output_attentions=True).attentions
        for layer, pattern in enumerate(attentions):
            expected = pattern[:, :, 1:, 0].mean(dim=(0, 2))  # every query but [CLS] itself
            from_cls = pattern[:, :, 0, :].mean(0)  # [h, k]
            for head in range(pattern.shape[1]):
                assert res.value("sink_attention", layer=layer, head=head) == pytest.approx(expected[head].item(),
                                                                                          abs=1e-6)
                assert maps.value("cls_attention", layer=layer, head=head, position=5) == pytest.approx(
                    from_cls[head, 5].item(), abs=1e-6)
    assert not sites.scores_are_pre_softmax(zoo.load("tiny-vit"))  # the ViT adapter fires it post hoc


# --------------------------------------------------------------------------------------------------
# images and background
# --------------------------------------------------------------------------------------------------


def test_the_package_names_the_functions_not_their_submodules():
    import importlib
    import types

    module = importlib.import_module("workbench.vision.shapes")  # importing the submodule binds it on the package
    assert vision.shapes is module.shapes and callable(vision.shapes)
    assert vision.train_vit is train_vit and vision.VIT_PRESETS["shapes-vit-reg4"] == ViTTrainConfig(registers=4)
    assert not [name for name in vision.__all__ if isinstance(getattr(vision, name), types.ModuleType)]
    assert not hasattr(vision, "TrainConfig") and not hasattr(vision, "PRESETS")  # one name, one meaning
    assert not hasattr(vision.ImageSet, "mark_high_norm")  # measuring is the probes' job (probes.high_norm)


def test_background_patches_are_read_from_the_image():
    image = np.full((1, 16, 16, 3), 0.2, dtype=np.float32)
    image[0, 4:8, 8:12] = 0.9  # exactly patch (1, 2)
    image[0, 13:15, 1:3] = (0.9, 0.1, 0.5)  # a corner of patch (3, 0)
    expected = np.ones((1, 4, 4), dtype=bool)
    expected[0, 1, 2] = expected[0, 3, 0] = False
    assert (vision.background_patches(image, 4) == expected).all()
    pixels, _, masks = vision.shapes(64, 32, seed=3)
    from workbench.vision.shapes import object_patches

    assert (vision.background_patches(pixels, 4) == ~object_patches(masks, 4)).all()


def test_image_sets_carry_kinds_labels_and_pixels(vit_reg):
    images = shapes_for(vit_reg, n=4, seed=2)
    kinds = images.kinds
    assert kinds.shape == (4, 19) and (kinds[:, 0] == positions.CLS).all()
    assert list(kinds[0, -2:]) == [positions.REGISTER, positions.REGISTER + 1]
    background = images.background.reshape(4, -1)
    assert ((kinds[:, 1:17] == positions.BACKGROUND) == background).all()
    pixels, labels, _ = vision.shapes(4, 16, seed=2)
    assert (images.labels == labels).all() and np.array_equal(images.pixels, pixels)
    assert torch.allclose(images.inputs(), (torch.from_numpy(pixels).permute(0, 3, 1, 2) - 0.5) / 0.5)
    assert images.provenance()["background_agrees_with_generator"] == 1.0
    names = zoo.info(vit_reg).tokenizer.decode([positions.CLS, positions.BACKGROUND, positions.REGISTER + 1])
    assert names == "[CLS]bg[REG1]"


def test_high_norm_marks_follow_the_rule(vit_reg):
    images = shapes_for(vit_reg, n=4)
    norms = patch_residual_norms(vit_reg, images, layer=1).reshape(4, -1)
    _, seen = grab(vit_reg, ["blocks.1.hook_resid_post"], images.inputs())
    assert np.allclose(norms, seen["blocks.1.hook_resid_post"][:, 1:17].norm(dim=-1).numpy(), rtol=1e-6)
    marked = mark_high_norm(vit_reg, images, "top:1")
    flagged = np.isin(marked.kinds[:, 1:17], (positions.BACKGROUND_HIGH, positions.OBJECT_HIGH))
    assert (flagged.sum(1) == 1).all() and (flagged.argmax(1) == norms.argmax(1)).all()
    assert marked.high_norm["rule"] == "top:1" and marked.high_norm["layer"] == 1
    assert marked.high_norm["fraction"] == 1 / 16 and images.high_norm is None  # a copy; the input is unchanged
    ratio = mark_high_norm(vit_reg, images, "ratio:1.0@0")
    above = patch_residual_norms(vit_reg, images, layer=0).reshape(4, -1)
    above = above > np.median(above, axis=1, keepdims=True)
    assert (np.isin(ratio.kinds[:, 1:17], (positions.BACKGROUND_HIGH, positions.OBJECT_HIGH)) == above).all()
    # marking is plain data: the same flags give the same kinds, whatever measured them
    again = images.with_high_norm(flagged.reshape(4, 4, 4), "top:1", 1)
    assert np.array_equal(again.kinds, marked.kinds) and again.high_norm == marked.high_norm
    with pytest.raises(InputError, match=r"give \[n, rows, cols\] = \[4, 4, 4\]"):
        images.with_high_norm(flagged[:, :8], "top:1", 1)


# --------------------------------------------------------------------------------------------------
# probes
# --------------------------------------------------------------------------------------------------


def test_image_attention_shares_sum_to_one_and_match_hf(vit_reg):
    images = shapes_for(vit_reg, n=5)
    res = probes.image_attention(vit_reg, images, progress=False)
    hf, _ = zoo.hf_reference("tiny-vit-reg")
    with torch.no_grad():
        pattern = hf(pixel_values=images.inputs(), output_attentions=True).attentions[1]  # [b, h, q, k]
    received = pattern.mean(dim=2)  # [b, h, k]
    background = torch.from_numpy(images.background.reshape(5, -1))
    bg = torch.stack([(received[i, :, 1:17] * background[i]).sum(-1) / background[i].sum() for i in range(5)]).mean(0)
    obj = torch.stack([(received[i, :, 1:17] * ~background[i]).sum(-1) / (~background[i]).sum() for i in range(5)]).mean(0)
    for head in range(4):
        shares = sum(res.value("attention_share", layer=1, head=head, kind=k)
                     for k in ("[CLS]", "registers", "background", "object"))
        assert shares == pytest.approx(1.0, abs=1e-5)
        assert res.value("attention_per_token", layer=1, head=head, kind="background") == pytest.approx(bg[head].item(),
                                                                                                       abs=1e-6)
        assert res.value("background_to_object_ratio", layer=1, head=head) == pytest.approx(
            (bg[head] / obj[head]).item(), rel=1e-5)
    top_share, top_key = received.max(dim=-1)  # [b, h]
    assert res.value("top_key_share", layer=1, head=0) == pytest.approx(top_share[:, 0].mean().item(), abs=1e-6)
    on_object = (~background).gather(1, (top_key[:, 0:1] - 1).clamp(0, 15))[:, 0] & (top_key[:, 0] >= 1) & \
        (top_key[:, 0] <= 16)
    assert res.filter(metric="top_key_kind", layer=1, head=0, kind="object").rows[0]["value"] == pytest.approx(
        on_object.float().mean().item())
    example = res.filter(metric="example_cls_attention", image=2, layer=1, row=1, col=3).rows[0]
    assert example["value"] == pytest.approx(pattern[2, :, 0, 1 + 4 + 3].mean().item(), abs=1e-6)


def test_patch_norms_measure_the_residual_stream(vit_reg):
    images = shapes_for(vit_reg, n=4)
    res = probes.patch_norms(vit_reg, images, rule="top:2", progress=False)
    _, seen = grab(vit_reg, ["blocks.0.hook_resid_post"], images.inputs())
    norms = seen["blocks.0.hook_resid_post"].norm(dim=-1)  # [b, T]
    assert res.filter(metric="example_norm", image=1, layer=0, row=2, col=1).rows[0]["value"] == pytest.approx(
        norms[1, 1 + 8 + 1].item(), rel=1e-5)
    assert res.value("norm_max", layer=0) == pytest.approx(norms[:, 1:17].max().item(), rel=1e-5)
    assert res.value("high_norm_fraction", layer=0) == pytest.approx(2 / 16)
    assert res.value("norm_mean", layer=0, kind="registers") == pytest.approx(norms[:, 17:].mean().item(), rel=1e-5)
    assert sum(r["value"] for r in res.filter(metric="norm_histogram", layer=0)) == 4 * 16


def test_two_population_test_separates_bimodal_from_unimodal_norms():
    rng = np.random.default_rng(0)
    bimodal = np.log(np.concatenate([rng.normal(10, 1, 970), rng.normal(150, 10, 30)]))
    threshold, d, upper = otsu_split(bimodal)
    assert d > 4 and upper == pytest.approx(0.03) and np.log(20) < threshold < np.log(130)
    assert otsu_split(rng.normal(10, 1, 20000))[1] == pytest.approx(2.65, abs=0.05)  # one population, split in two


# --------------------------------------------------------------------------------------------------
# interventions
# --------------------------------------------------------------------------------------------------

IMAGE_SINKS = ["cls", "reg", "reg:1", "bg", "obj", "top-norm", "patch:1,2"]


def test_every_image_sink_works_in_the_catalogue_interventions(vit_reg):
    images = mark_high_norm(vit_reg, shapes_for(vit_reg, n=6), "top:1")
    entries = [f"{name}:sink={sink}" for sink in IMAGE_SINKS for name in ("mask-sink", "scale-sink", "zero-sink-value")]
    res = experiment.run(vit_reg, images, entries, progress=False)
    kl = res.filter(metric="kl").df
    assert len(kl) == len(entries) and (kl.value > 0).all() and kl.value.notna().all()
    tokens, inputs = images.tensor(), images.inputs()
    for sink in IMAGE_SINKS:  # the value route and the rebuilt-pattern route remove the same term
        with torch.no_grad(), experiment.hooked(vit_reg, f"zero-sink-value:sink={sink}", tokens):
            by_values = vit_reg(inputs)
        with torch.no_grad(), experiment.hooked(vit_reg, f"zero-implicit-bias:sink={sink}", tokens):
            by_pattern = vit_reg(inputs)
        assert torch.allclose(by_values, by_pattern, atol=1e-5), sink
    fixed = experiment.run(vit_reg, images, ["mean-sink-value:sink=reg:0", "mean-implicit-bias:sink=cls"],
                           progress=False)
    assert fixed.filter(metric="kl").df.value.notna().all()
    with pytest.raises(InputError, match="fixed sink positions"):
        experiment.run(vit_reg, images, ["mean-sink-value:sink=bg"], progress=False)


def test_mask_sink_on_a_vit_renormalises_the_rebuilt_pattern(vit_reg):
    images = shapes_for(vit_reg, n=3)
    names = ["blocks.0.attn.hook_pattern", "blocks.0.attn.hook_v", "blocks.0.attn.hook_z"]
    _, clean = grab(vit_reg, names, images.inputs())
    pattern, value = clean["blocks.0.attn.hook_pattern"], clean["blocks.0.attn.hook_v"]
    sink = torch.from_numpy(images.background.reshape(3, -1))
    keys = torch.zeros(3, 19, dtype=torch.bool)
    keys[:, 1:17] = sink
    masked = pattern * ~keys[:, None, None, :]
    masked = torch.where(~keys[:, None, :, None], masked / masked.sum(-1, keepdim=True), pattern)
    expected = torch.einsum("bhqk,bkhd->bqhd", masked, value)
    with torch.no_grad(), experiment.hooked(vit_reg, "mask-sink:layers=0,sink=bg", images.tensor()):
        _, seen = grab(vit_reg, ["blocks.0.attn.hook_z"], images.inputs())
    assert torch.allclose(seen["blocks.0.attn.hook_z"], expected, atol=1e-5)
    assert not torch.allclose(clean["blocks.0.attn.hook_z"], expected, atol=1e-4)


def test_test_time_register_moves_the_register_neurons_onto_an_extra_token(vit_reg):
    images = shapes_for(vit_reg, n=6)
    ttr = iv.get("test-time-register", rule="top:1", n_neurons=3)
    state = ttr.prepare(vit_reg, images)
    assert sum(len(n) for n in state["neurons"].values()) == 3 and state["n_outliers"] == 6
    layer, neurons = next(iter(state["neurons"].items()))
    name = f"blocks.{layer}.mlp.hook_post"
    before = {}
    outer = [(name, lambda t, hook: before.setdefault("act", t.detach().clone()))]
    with torch.no_grad(), vit_reg.hooks(fwd_hooks=outer), \
            experiment.hooked(vit_reg, ttr, images.tensor(), state=state):
        _, after = grab(vit_reg, [name, "blocks.1.hook_resid_post"], images.inputs())
    act, edited = before["act"], after[name]
    assert edited.shape[1] == 19 + 1 and after["blocks.1.hook_resid_post"].shape[1] == 20
    assert (edited[:, 1:17, neurons] == 0).all()
    assert torch.equal(edited[:, -1, neurons], act[:, 1:17, neurons].max(dim=1).values)
    res = experiment.run(vit_reg, images, ["test-time-register:n_neurons=3", "mask-sink:sink=cls"], progress=False)
    assert res.filter(metric="kl", intervention="test-time-register(n_neurons=3)").rows[0]["value"] > 0
    hooks, spec = experiment.batch_hooks(vit_reg, ttr, images, batch_size=32)
    norms = probes.patch_norms(vit_reg, images, hooks=hooks, hooks_spec=spec, progress=False)
    assert norms.value("norm_mean", layer=1, kind="[TTR]") > 0
    with pytest.raises(InputError, match="cannot be composed"):
        experiment.run(vit_reg, images, [iv.parse("test-time-register + mask-sink")], progress=False)


def test_classifier_metrics_and_identity(vit):
    images = shapes_for(vit, n=8)
    res = experiment.run(vit, images, ["patch-values:source=roll:0", "scale-sink:gamma=1", "mask-sink:sink=cls"],
                         progress=False)
    with torch.no_grad():
        predicted = vit(images.inputs()).argmax(-1).numpy()
    assert res.value("accuracy", intervention="none") == pytest.approx((predicted == images.labels).mean())
    same = "patch-values(source='roll:0')"  # every value patched with its own: the baseline, exactly
    assert res.value("kl", intervention=same) == 0.0 and res.value("logit_change", intervention=same) == 0.0
    assert res.value("top1_agreement", intervention=same) == 1.0 and res.value("delta_accuracy", intervention=same) == 0
    assert res.value("kl", intervention="scale-sink(gamma=1.0)") < 1e-6
    assert res.value("kl", intervention="mask-sink(sink='cls')") > 0
    assert experiment.evaluate(vit, images, progress=False).value("accuracy") == res.value("accuracy", intervention="none")
    with pytest.raises(InputError, match="means nothing on tiny-vit, an image classifier"):
        experiment.run(vit, images, ["mask-sink"], metrics=["loss"], progress=False)


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 32, 32, 3), np.float32), r"images are 32 x 32 with 3 channel\(s\); tiny-vit expects 16 x 16 with 3"),
    (np.zeros((2, 16, 16, 1), np.float32), r"16 x 16 with 1 channel\(s\); tiny-vit expects 16 x 16 with 3"),
    (np.zeros((2, 3, 16, 16), np.float32), "expects 16 x 16 with 3"),
    (np.full((2, 16, 16, 3), 2.0, np.float32), r"in \[0, 1\]"),
])
def test_images_of_the_wrong_shape_are_refused(vit, images, message):
    with pytest.raises(InputError, match=message):
        vision.image_set(vit, images)


def test_image_files_that_are_not_images_are_one_error(vit, tmp_path):
    good = np.zeros((2, 16, 16, 3), np.uint8)
    np.savez(tmp_path / "ok.npz", images=good)
    files = {"garbage.npz": b"\x00\x01\xff not an archive", "garbage.npy": b"\x89PNG\r\n\x1a\n garbage",
             "truncated.npz": (tmp_path / "ok.npz").read_bytes()[:200]}
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(InputError, match=f"{name} is not a readable"):
            vision.image_set(vit, tmp_path / name)
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    with pytest.raises(InputError, match="images must be numbers"):
        vision.image_set(vit, tmp_path / "words.npy")
    np.save(tmp_path / "one-array.npz.npy", good)
    (tmp_path / "one-array.npz.npy").rename(tmp_path / "one-array.npz")  # an .npy under an .npz name: still read
    assert len(vision.image_set(vit, tmp_path / "one-array.npz")) == 2


def test_high_norm_thresholds_and_training_floats_refuse_nan():
    for value in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(InputError, match="threshold"):
            vision.HighNormRule("abs", value)
    with pytest.raises(InputError, match="top:K needs an integer"):
        vision.HighNormRule("top", 1.5)
    with pytest.raises(InputError, match="unknown high-norm rule kind"):
        vision.HighNormRule("biggest", 1.0)
    assert vision.HighNormRule.parse("ratio:3@4") == vision.HighNormRule("ratio", 3.0, 4)
    for field, value in (("lr", float("nan")), ("lr", 0.0), ("weight_decay", float("nan")), ("noise", float("nan")),
                         ("noise", -0.1)):
        with pytest.raises(InputError, match="learning rate|weight decay|pixel noise"):
            dataclasses.replace(TINY_TRAINING, **{field: value}).validate()


@pytest.mark.parametrize("sink, message", [
    ("reg:2", r"tiny-vit-reg has 2 register tokens: allowed reg:0\.\.reg:1"),
    ("patch:4,0", r"sink patch \(4, 0\) is outside the 4 x 4 patch grid of tiny-vit-reg: rows 0\.\.3"),
    ("patch:0,9", "outside the 4 x 4 patch grid"),
    ("top-norm", "mark high-norm patches first"),
    ("tok:.", "image model, it has no text tokens"),
    ("sep", "it has no \\[SEP\\]"),
    ("dist", "has no distillation token"),
])
def test_bad_image_sinks_are_clear_errors(vit_reg, sink, message):
    with pytest.raises(InputError, match=message):
        experiment.run(vit_reg, shapes_for(vit_reg), [f"mask-sink:sink={sink}"], progress=False)


def test_bad_models_and_interventions_for_images(vit, tiny_llama):
    with pytest.raises(InputError, match="tiny-vit has no register tokens"):
        probes.sinks(vit, shapes_for(vit), sink="reg", progress=False)
    with pytest.raises(InputError, match="needs a causal mask; tiny-vit is a bidirectional image model"):
        experiment.run(vit, shapes_for(vit), ["window-attention"], progress=False)
    with pytest.raises(InputError, match="needs an image model"):
        iv.get("test-time-register").validate(tiny_llama)
    with pytest.raises(InputError, match="image sink; tiny-llama is a text model"):
        iv.get("mask-sink", sink="bg").validate(tiny_llama)
    with pytest.raises(InputError, match="text model"):
        vision.image_set(tiny_llama)
    for registers in (-1, 65, 2.5):
        with pytest.raises(InputError, match="register count"):
            dataclasses.replace(TINY_TRAINING, registers=registers).validate()
    with pytest.raises(InputError, match="cannot read high-norm rule"):
        mark_high_norm(vit, shapes_for(vit), "biggest")


def test_cli_trains_probes_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    from workbench import cli

    assert cli.main(["probe", "image-attention", "--model", "tiny-vit-reg", "--n-images", "4",
                     "--json", str(tmp_path / "att.json")]) == 0
    assert "background" in capsys.readouterr().out
    assert cli.main(["run", "--model", "tiny-vit-reg", "--n-images", "4", "--high-norm", "top:1",
                     "-i", "mask-sink:sink=top-norm", "-i", "test-time-register"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert cli.main(["train-vit", "--out", str(tmp_path / "v"), "--registers", "99"]) == 2  # as `-m workbench.cli`
    err = capsys.readouterr().err
    assert err.startswith("sinkbench: error: register count 99 is not allowed: use an integer in 0..64")
    assert err.count("\n") == 1 and not (tmp_path / "v").exists()
