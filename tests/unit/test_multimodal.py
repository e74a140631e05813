"""Multimodal LMs: tiny-llava through TransformerLens's LLaVA adapter, mixed sequences and their position kinds,
the mixed probes (checked against plain transformers), the visual-sink interventions, the trainer, bad input."""

import dataclasses

import numpy as np
import pytest
import torch

import interventions as iv
from interventions.multimodal import answer_accuracy
from workbench import probes, zoo
from workbench.core import positions
from workbench.core.errors import InputError
from workbench.core.sites import SinkSpec
from workbench.multimodal import mixed_set, scenes
from workbench.multimodal.scenes import QUESTIONS
from workbench.multimodal.train import LlavaTrainConfig, train_llava
from workbench.passes import PassContext, batches, forward
from workbench.vision.images import to_model_input
from workbench.vision.shapes import object_patches

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llava():
    return zoo.load("tiny-llava")


@pytest.fixture(scope="module")
def data(llava):
    return mixed_set(llava, n=8, seed=0)


@pytest.fixture(scope="module")
def reference():
    return zoo.hf_reference("tiny-llava")[0]


def hf_inputs(model, data):
    info = zoo.info(model)
    pixels = to_model_input(data.scenes.pixels, info.image_mean, info.image_std)
    return positions.mixed_ids(data.tokens), pixels


def test_parity_with_hf_eager_on_a_mixed_input(llava, data, reference):
    ids, pixels = hf_inputs(llava, data)
    with torch.no_grad():
        expected = reference(input_ids=ids, pixel_values=pixels).logits
        through_embeds = llava(data.model_inputs(list(range(len(data))), data.tokens))
        through_pixels = llava(ids, pixel_values=pixels)
    assert type(llava.adapter).__name__ == "LlavaArchitectureAdapter"  # the real adapter, CLIP tower bridged
    assert (through_embeds - expected).abs().max() < 1e-4
    assert (through_pixels - expected).abs().max() < 1e-4


def test_model_info_and_mixed_tokens(llava, data):
    info = zoo.info(llava)
    assert info.is_multimodal and info.causal and not info.is_image
    assert (info.n_image_tokens, info.image_size, info.patch_size) == (16, (16, 16), 4)
    kinds = data.kinds()
    assert data.tokens.shape == (8, 1 + 16 + 6 + 1)
    objects = torch.from_numpy(object_patches(data.scenes.masks, 4).reshape(8, -1))
    assert torch.equal(kinds[:, 1:17] == positions.MIXED_VISUAL_OBJ, objects)  # object by the image's own mask
    assert (kinds[:, -1] == positions.MIXED_ANSWER).all()
    assert (positions.mixed_ids(data.tokens)[:, 1:17] == info.image_token_id).all()


@pytest.mark.parametrize("sink, count", [("bos", lambda d: 1), ("visual", lambda d: 16), ("question", lambda d: 6),
                                          ("answer", lambda d: 1)])
def test_mixed_sinks_resolve_and_read_back(llava, data, sink, count):
    spec = SinkSpec.parse(sink)
    assert SinkSpec.parse(spec.label) == spec
    mask = PassContext.of(llava, data.tokens, sink).sink
    assert (mask.sum(1) == count(data)).all()


def test_bg_obj_sinks_split_the_visual_tokens(llava, data):
    bg = PassContext.of(llava, data.tokens, "bg", require=False).sink
    obj = PassContext.of(llava, data.tokens, "obj", require=False).sink
    visual = PassContext.of(llava, data.tokens, "visual").sink
    assert not (bg & obj).any() and torch.equal(bg | obj, visual)
    # a token sink matches the answer token too (kind bits are stripped before the ids are compared)
    answer = data.tokens[0, -1] % positions.KIND_STRIDE
    token = zoo.info(llava).tokenizer.decode([int(answer)])
    found = PassContext.of(llava, data.tokens[:1], f"tok:{token}").sink
    assert found[0, -1]


def test_scenes_carry_masks_and_answers():
    scene = scenes(32, size=32, seed=3)
    again = scenes(32, size=32, seed=3)
    assert np.array_equal(scene.pixels, again.pixels) and scene.masks.any(axis=(1, 2)).all()
    for q in QUESTIONS.values():
        assert len({a[0] for a in q.answers}) == len(q.answers)  # the first token decides
    cols = np.where(scene.masks.any(axis=1), np.arange(32)[None, :], np.nan)
    centre = np.nanmean(cols, axis=1)
    assert np.array_equal(centre >= 15.5, scene.side == 1)


def test_mixed_attention_matches_hf_attentions(llava, data, reference):
    ids, pixels = hf_inputs(llava, data)
    with torch.no_grad():
        attentions = reference(input_ids=ids, pixel_values=pixels, output_attentions=True).attentions
    res = probes.mixed_attention(llava, data, progress=False)
    text = (positions.mixed_kinds(data.tokens) != positions.MIXED_VISUAL_BG) & \
        (positions.mixed_kinds(data.tokens) != positions.MIXED_VISUAL_OBJ)
    text[:, 0] = False
    for layer, weights in enumerate(attentions):
        received = (weights * text[:, None, :, None]).sum(2) / text.sum(1)[:, None, None]  # [b, h, k]
        expected = received[:, :, 1:17].sum(-1).mean(0)  # share on visual tokens per head
        got = res.df[(res.df.metric == "attention_share") & (res.df.layer == layer)
                     & res.df.kind.isin(["visual-bg", "visual-obj"])].groupby("head").value.sum()
        assert np.allclose(got.values, expected.numpy(), atol=1e-5)
    per_head = res.df[res.df.metric == "attention_share"].groupby(["layer", "head"]).value.sum()
    assert np.allclose(per_head.values, 1.0, atol=1e-5)  # the kinds partition every row


def test_visual_sinks_threshold_and_activations(llava, data):
    low = probes.visual_sinks(llava, data, threshold=0.01)
    high = probes.visual_sinks(llava, data, threshold=0.99)
    visual = positions.mixed_kinds(data.tokens) >= positions.MIXED_VISUAL_BG
    assert torch.equal(low, visual) and not high.any()  # every visual token gets > 1 %, none 99 %
    res = probes.visual_sink_activations(llava, data, threshold=0.05, top_dims=2, progress=False)
    phi = res.df[(res.df.metric == "sink_dim_ratio") & (res.df.group == "bos")]
    assert len(phi) == 2 and (phi.value > 0).all() and (phi.value <= 8.0 + 1e-6).all()  # phi <= sqrt(d_model)
    with pytest.raises(InputError, match=r"threshold = 1.5 is out of range: allowed \(0, 1\]"):
        probes.visual_sinks(llava, data, threshold=1.5)


def _patterns(model, data, intervention):
    intervention = iv.parse(intervention) if isinstance(intervention, str) else intervention
    state = intervention.prepare(model, data)
    seen, logits = {}, []
    for ctx in batches(model, data, 8):
        ctx = dataclasses.replace(ctx, state=state)

        def grab(tensor, hook):
            seen[hook.name] = tensor.detach().clone()
        hooks = intervention.hooks(model, ctx) + [(f"blocks.{layer}.attn.hook_pattern", grab) for layer in range(2)]
        with torch.no_grad():
            logits.append(forward(model, ctx.inputs, hooks))
    return seen, torch.cat(logits), state


def test_identities_reproduce_the_baseline(llava, data):
    _, base, _ = _patterns(llava, data, "none")
    for identity in ["var:p=0,threshold=0.03", "var:rho=1.0,threshold=0.99", "mask-visual-sinks:threshold=0.99"]:
        _, logits, _ = _patterns(llava, data, identity)
        assert torch.equal(logits, base), identity


def _partial_threshold(model, data):
    """A threshold that makes about a quarter of the visual tokens sinks on this random model: the upper
    quartile of what each visual token receives from the text queries (mean over layers and heads)."""
    received = []
    text = positions.mixed_kinds(data.tokens) <= positions.MIXED_ANSWER
    text[:, 0] = False

    def grab(tensor, hook):
        received.append(((tensor * text[:, None, :, None]).sum(2) / text.sum(1)[:, None, None]).mean(1))
    with torch.no_grad():
        forward(model, data.model_inputs(list(range(len(data))), data.tokens),
                [(f"blocks.{layer}.attn.hook_pattern", grab) for layer in range(2)])
    visual = positions.mixed_kinds(data.tokens) >= positions.MIXED_VISUAL_BG
    values = torch.stack(received).mean(0)[visual]
    return float(torch.quantile(values, 0.75))


def test_mask_and_var_move_the_sink_attention(llava, data):
    _, base, _ = _patterns(llava, data, "none")
    threshold = _partial_threshold(llava, data)
    seen, masked, sinks = _patterns(llava, data, f"mask-visual-sinks:threshold={threshold}")
    assert sinks.any() and not torch.equal(masked, base)
    text = (positions.mixed_kinds(data.tokens) <= positions.MIXED_ANSWER)
    text[:, 0] = False
    pattern = seen["blocks.1.attn.hook_pattern"]  # [b, h, q, k] after the edit
    on_sinks = (pattern * sinks[:, None, None, :]).sum(-1)
    assert on_sinks.masked_select(text[:, None, :]).abs().max() == 0  # text queries: nothing left on the sinks
    assert torch.allclose(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), atol=1e-5)
    seen, moved, _ = _patterns(llava, data, f"var:threshold={threshold},p=0.5,rho=0.0")
    pattern = seen["blocks.0.attn.hook_pattern"]  # layer 0: the edit is the only change to its pattern
    assert torch.allclose(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), atol=1e-5)  # rows keep their sum
    visual = positions.mixed_kinds(data.tokens) >= positions.MIXED_VISUAL_BG
    before = _patterns(llava, data, "none")[0]["blocks.0.attn.hook_pattern"]
    kept_visual = ((pattern - before) * visual[:, None, None, :]).sum(-1)  # VAR moves attention within the image
    assert kept_visual.abs().max() < 1e-5 and not torch.equal(moved, base) and not torch.equal(pattern, before)


def test_answer_accuracy_rows(llava, data):
    res = answer_accuracy(llava, data, ["none", "var:threshold=0.05"])
    frame = res.df
    assert set(frame.intervention) == {"none", "var(threshold=0.05)"}
    none = frame[(frame.intervention == "none") & (frame.metric == "agreement")]
    assert (none.value == 1.0).all()
    assert set(frame.question) == {"all", *QUESTIONS}


def test_bad_input_is_one_clear_error(llava, data, tiny_llama):
    with pytest.raises(InputError, match=r"var: p .* = 1.5 is out of range: allowed \[0, 1\]"):
        iv.parse("var:p=1.5").validate(llava)
    with pytest.raises(InputError, match=r"rho .* = -0.5 is out of range: allowed \[0, 1\]"):
        iv.get("var", rho=-0.5).validate(llava)
    with pytest.raises(InputError, match="tiny-llama is not one"):
        iv.parse("mask-visual-sinks").validate(tiny_llama)
    with pytest.raises(InputError, match="needs a multimodal LM"):
        mixed_set(tiny_llama, n=2)
    with pytest.raises(InputError, match="unknown question type 'size'"):
        mixed_set(llava, n=2, questions="size")
    with pytest.raises(InputError, match="not a multimodal LM"):
        probes.mixed_attention(tiny_llama, data)
    from workbench import experiment

    with pytest.raises(InputError, match="multimodal LM: the runner scores text or image models"):
        experiment.run(llava, data, ["mask-sink"], progress=False)


def test_trainer_is_deterministic_and_resumable(tmp_path):
    config = LlavaTrainConfig(vision="tiny-vit", hidden_size=16, layers=1, heads=2, kv_heads=1, mlp_ratio=2,
                              feature_layer=-1, steps=4, batch_size=4, pool=16, warmup=1, eval_images=8, eval_every=2,
                              checkpoint_every=2)
    whole = train_llava(config, tmp_path / "whole", progress=False, log=lambda *_: None)
    stopped = train_llava(config, tmp_path / "resumed", progress=False, log=lambda *_: None, stop_after=2)
    assert stopped == {"stopped_at": 2} and (tmp_path / "resumed.resume" / "state.pt").is_file()
    resumed = train_llava(config, tmp_path / "resumed", progress=False, log=lambda *_: None)
    assert resumed["final_accuracy"] == whole["final_accuracy"]
    a = zoo.load(str(tmp_path / "whole"), fresh=True)
    b = zoo.load(str(tmp_path / "resumed"), fresh=True)
    for (name, x), (_, y) in zip(a.original_model.state_dict().items(), b.original_model.state_dict().items()):
        assert torch.equal(x, y), name
    assert type(a.adapter).__name__ == "LlavaViTArchitectureAdapter"
    assert not (tmp_path / "resumed.resume").exists()
    with pytest.raises(InputError, match=r"feature layer -3: tiny-vit has 2 blocks, allowed -2..-1"):
        train_llava(dataclasses.replace(config, feature_layer=-3), tmp_path / "bad", progress=False,
                    log=lambda *_: None)


def test_overview_figure_plots_the_three_panels(llava, data):
    from workbench.plots.multimodal import visual_sinks_overview

    attention = probes.mixed_attention(llava, data, progress=False)
    activations = probes.visual_sink_activations(llava, data, progress=False)
    answers = answer_accuracy(llava, data, ["none", "mask-visual-sinks"])
    fig, frame = visual_sinks_overview(attention, activations, answers)
    assert len(fig.axes) == 3 and set(frame.panel) == {"a", "b", "c"}
    shares = frame[(frame.panel == "a") & (frame.metric == "attention_share")].groupby("layer").value.sum()
    assert np.allclose(shares.values, 1.0, atol=1e-5)  # the stacked bars fill each layer


def test_cli_probes_a_multimodal_model_and_refuses_the_runner(capsys, llava):
    from workbench import cli

    assert cli.main(["probe", "mixed-attention", "--model", "tiny-llava", "--n-images", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 mixed sequences x 24 positions" in out and "visual-bg" in out
    assert cli.main(["eval", "--model", "tiny-llava", "--n-images", "4"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "tiny-llava is a multimodal LM" in err


def test_a_local_llava_directory_runs_the_same_commands(llava, data, reference, tmp_path, capsys):
    from workbench import cli

    reference.save_pretrained(tmp_path / "llava")  # the plain HF model (the same seed as the zoo's tiny-llava)
    zoo.info(llava).tokenizer.save_pretrained(tmp_path / "llava")
    local = zoo.load(str(tmp_path / "llava"), fresh=True)
    assert zoo.info(local).is_multimodal and zoo.info(local).n_image_tokens == 16
    again = mixed_set(local, n=8, seed=0)
    assert torch.equal(again.tokens, data.tokens)
    with torch.no_grad():
        expected = llava(data.model_inputs(list(range(8)), data.tokens))
        got = local(again.model_inputs(list(range(8)), again.tokens))
    assert (got - expected).abs().max() < 1e-5
    assert cli.main(["probe", "visual-sinks", "--model", str(tmp_path / "llava"), "--n-images", "4"]) == 0
    assert "sink-dimension ratio" in capsys.readouterr().out
