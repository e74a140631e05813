"""workbench.toy: the hooked toy transformer, its tasks, deterministic training, checkpoints and `sinkbench train`."""

import json

import numpy as np
import pytest
import torch

from workbench import cli, zoo
from workbench.core import corpora, data
from workbench.core.errors import InputError
from workbench.toy import (
    TASKS,
    VARIANTS,
    ToyConfig,
    ToyTrainConfig,
    ToyTransformer,
    load_toy,
    load_weights,
    make_task,
    preset,
    read_curves,
    save_weights,
    summarize,
    train,
)
from workbench.toy.checkpoint import read_metadata
from workbench.toy.tasks import ALPHABET, BOS_ID, VOCAB_SIZE, encode, tokenizer

# Original prose written for these tests: varied enough for bigram statistics with clear top-3 characters.
TEXT = """The ferry left the harbour at dawn, and the gulls followed it out past the breakwater.
Nobody on deck spoke much; a woman in a green coat read a letter twice and then folded it away.
By noon the wind had turned, the water went from grey to a hard bright blue, and the captain
shouted something that nobody could hear. A boy counted the islands aloud: one, then another,
then a third that was only a rock with a lighthouse on it. When they landed, the town smelled of
tar and bread. Old men were mending nets on the quay, and a dog slept in the middle of the road
as if the road belonged to it. The woman in the green coat asked the way to the post office,
wrote a short reply, and posted it before she could change her mind. Later that evening she
walked along the shore, watching the lamps come on one by one, and thought that the letter had
said very little and meant a great deal. The boy found a crab under a stone and carried it to
the water with great care. Somebody was playing a fiddle in the tavern; the tune was slow, then
quick, then slow again, like a conversation between two friends who had not met for years.
"""


@pytest.fixture()
def corpus(tmp_path, monkeypatch):
    """A small 'shakespeare' corpus in a private cache, so training needs no registry: the prose above and
    300 lines of its words in seeded random order (natural spelling, varied word transitions)."""
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "cache"))
    root = corpora.corpus_dir("shakespeare")
    root.mkdir(parents=True)
    words = TEXT.split()
    rng = np.random.default_rng(0)
    lines = "\n".join(" ".join(rng.choice(words, size=12)) for _ in range(300))
    docs = [{"title": "Harbour", "text": TEXT}, {"title": "Words", "text": lines}]
    (root / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "manifest.json").write_text(json.dumps({"name": "shakespeare", "documents": ["Harbour", "Words"],
                                                    "sha256": "test"}))
    return root


def small(attention, **kw):
    return ToyConfig(attention=attention, d_vocab=VOCAB_SIZE, n_ctx=16, d_model=16, n_layers=2, n_heads=2, **kw)


def tokens(batch=3, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randint(0, len(ALPHABET), (batch, T), generator=g)
    out[:, 0] = BOS_ID
    return out


def build(cfg, seed=0):
    torch.manual_seed(seed)
    return ToyTransformer(cfg).eval()


# --------------------------------------------------------------------------------------------------
# The model protocol
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", list(VARIANTS))
@pytest.mark.parametrize("positional", ["absolute", "rotary"])
def test_every_variant_exposes_transformer_lens_hooks_with_their_shapes(attention, positional):
    model = build(small(attention, positional=positional))
    x = tokens()
    B, T, H, E, D = 3, 12, 2, 8, 16
    logits, cache = model.run_with_cache(x)
    assert logits.shape == (B, T, VOCAB_SIZE) and torch.isfinite(logits).all()
    expected = {"hook_embed": (B, T, D)}
    for layer in range(2):
        b = f"blocks.{layer}."
        expected |= {b + "hook_resid_pre": (B, T, D), b + "hook_resid_mid": (B, T, D), b + "hook_resid_post": (B, T, D),
                     b + "hook_attn_out": (B, T, D), b + "hook_mlp_out": (B, T, D),
                     b + "attn.hook_q": (B, T, H, E), b + "attn.hook_k": (B, T, H, E), b + "attn.hook_v": (B, T, H, E),
                     b + "attn.hook_attn_scores": (B, H, T, T), b + "attn.hook_pattern": (B, H, T, T),
                     b + "attn.hook_z": (B, T, H, E), b + "mlp.hook_post": (B, T, 4 * D)}
        if positional == "rotary":
            expected |= {b + "attn.hook_rot_q": (B, T, H, E), b + "attn.hook_rot_k": (B, T, H, E)}
        if VARIANTS[attention].extra_slot:
            expected[b + "attn.hook_sink"] = (B, H, T)
        if attention == "gated":
            expected[b + "attn.hook_gate"] = (B, T, H, E)
    for name, shape in expected.items():
        assert name in model.hook_dict, name
        assert tuple(cache[name].shape) == shape, name
    attn = model.blocks[1].attn
    assert attn.W_Q.shape == attn.W_K.shape == attn.W_V.shape == (H, D, E)
    assert attn.W_O.shape == (H, E, D)
    assert attn.b_V is None and attn.b_O is None
    assert model.variant == attention and model.cfg.n_key_value_heads == H
    # scores are pre-normalisation with the causal mask applied as -inf
    scores = cache["blocks.0.attn.hook_attn_scores"]
    assert torch.isneginf(scores[..., 0, 1:]).all() and torch.isfinite(scores.tril()).all()


def test_a_headwise_gate_scales_each_head_by_one_number():
    model = build(small("gated", gate="headwise"))
    x = tokens()
    base, cache = model.run_with_cache(x)
    assert cache["blocks.0.attn.hook_gate"].shape == (3, 12, 2, 1)
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_gate", lambda g, hook: torch.ones_like(g))]):
        assert (model(x) - base).abs().max() > 1e-4


def test_the_weights_are_what_each_variant_says():
    x = tokens()
    for attention in VARIANTS:
        model = build(small(attention))
        _, cache = model.run_with_cache(x)
        scores = cache["blocks.1.attn.hook_attn_scores"]
        pattern = cache["blocks.1.attn.hook_pattern"]
        T = x.shape[1]
        assert (pattern.triu(1) == 0).all(), attention
        rows = pattern.sum(-1)
        if attention in ("softmax", "gated"):
            torch.testing.assert_close(rows, torch.ones_like(rows))
        elif attention == "sigmoid":
            torch.testing.assert_close(pattern, torch.sigmoid(scores))
        elif attention == "relu":
            torch.testing.assert_close(pattern, torch.relu(scores) / torch.arange(1, T + 1)[:, None])
        else:  # one extra zero-value slot: the real keys and the slot share one softmax
            sink = cache["blocks.1.attn.hook_sink"]
            torch.testing.assert_close(rows + sink, torch.ones_like(rows))
            assert (rows < 1).all()
            if attention == "softmax1":
                torch.testing.assert_close(sink, 1 / (1 + scores.exp().sum(-1)))


@pytest.mark.parametrize("attention", list(VARIANTS))
def test_edits_at_hook_pattern_and_hook_z_reach_the_logits_and_identity_hooks_do_not(attention):
    model = build(small(attention))
    x = tokens()
    base = model(x)
    with model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"), lambda t, hook: None)]):
        assert torch.equal(model(x), base)

    def no_sink(pattern, hook):  # remove the attention to BOS from every query but the first
        pattern = pattern.clone()
        pattern[:, :, 1:, 0] = 0
        return pattern

    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", no_sink)]):
        edited = model(x)
    assert (edited - base)[:, 1:].abs().max() > 1e-4
    torch.testing.assert_close(edited[:, 0], base[:, 0])  # position 0 only attends to itself: unchanged
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: z * 0)]):
        assert (model(x) - base).abs().max() > 1e-4


def test_zeroing_value_weights_of_a_head_changes_the_output():
    model = build(small("softmax"))
    x = tokens()
    base = model(x)
    with torch.no_grad():
        model.blocks[0].attn.W_V[1].zero_()
    assert (model(x) - base).abs().max() > 1e-4


def test_one_seed_gives_every_variant_the_same_shared_initial_weights():
    reference = dict(build(small("softmax"), seed=3).named_parameters())
    for attention in VARIANTS:
        params = dict(build(small(attention), seed=3).named_parameters())
        for name, value in reference.items():
            assert torch.equal(params[name], value), (attention, name)


def test_bad_configurations_are_refused():
    with pytest.raises(InputError, match="softmax, softmax1, sigmoid, relu, gated, sink-logit, kv-bias"):
        ToyConfig(attention="linear")
    with pytest.raises(InputError, match="divisible"):
        ToyConfig(d_model=10, n_heads=3)
    with pytest.raises(InputError, match="positional"):
        ToyConfig(positional="alibi")
    model = build(small("softmax"))
    with pytest.raises(InputError, match="context"):
        model(torch.zeros(1, 17, dtype=torch.long))


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------


def test_bigram_backcopy_follows_guo_et_al_generation_rule(corpus):
    task = make_task("bigram-backcopy", "shakespeare", seq_len=64)
    ids = encode(TEXT)
    top3 = sorted(np.argsort(-np.bincount(ids, minlength=len(ALPHABET)), kind="stable")[:3].tolist())
    assert list(task.triggers) == top3 and ALPHABET[top3[0]] == " "
    np.testing.assert_allclose(task.transitions.sum(1), 1.0)
    seq = task.sample(np.random.default_rng(0), 32)
    assert seq.shape == (32, 65) and (seq[:, 0] == BOS_ID).all()
    assert not task.is_trigger(seq[:, 1]).any()
    triggers = task.is_trigger(seq[:, 1:-1])
    assert triggers.mean() > 0.1
    after = seq[:, 2:][triggers]  # the token after each trigger ...
    before = seq[:, :-2][triggers]  # ... copies the token before it
    np.testing.assert_array_equal(after, before)
    # and the other transitions are bigram draws: they only use pairs the corpus contains
    bigram = ~triggers
    pairs = task.transitions[seq[:, 1:-1][bigram], seq[:, 2:][bigram]]
    assert (pairs > 0).all()
    # the same seed gives the same batch
    np.testing.assert_array_equal(task.sample(np.random.default_rng(0), 32), seq)


def test_backcopy_and_bigram_risks_are_zero_for_the_true_distribution(corpus):
    task = make_task("bigram-backcopy", "shakespeare", seq_len=32)
    inputs, targets = task.batch(np.random.default_rng(1), 8)
    logits = torch.full((8, 32, VOCAB_SIZE), -1e4)
    truth = torch.as_tensor(task.transitions, dtype=torch.float32)
    logits[..., : len(ALPHABET)] = truth[inputs.clamp_max(len(ALPHABET) - 1)].clamp_min(1e-30).log()
    trig = task.is_trigger(inputs)
    logits[trig] = -1e4
    logits[trig, targets[trig]] = 0.0
    metrics = task.evaluate(logits, inputs, targets)
    assert metrics["backcopy_risk"] == pytest.approx(0, abs=1e-6)
    assert metrics["bigram_risk"] == pytest.approx(0, abs=1e-5)
    uniform = task.evaluate(torch.zeros(8, 32, VOCAB_SIZE), inputs, targets)
    assert uniform["backcopy_risk"] == pytest.approx(np.log(VOCAB_SIZE), rel=1e-5)
    assert uniform["bigram_risk"] > 1.0


def test_tokenizer_round_trips_the_alphabet_and_has_a_bos():
    tok = tokenizer()
    ids = tok("To be, or not\nto be!", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "To be, or not\nto be!"
    assert tok.bos_token_id == BOS_ID and len(tok) == VOCAB_SIZE
    assert list(encode("a\u2014b9c")) == [ALPHABET.index(c) for c in "abc"]  # out-of-alphabet characters dropped


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def tiny(attention="softmax", **kw):
    return preset("tiny", attention=attention, **kw)


def weights(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_the_package_names_the_functions_not_their_submodules():
    import importlib
    import types

    from workbench import toy

    module = importlib.import_module("workbench.toy.train")  # importing the submodule binds it on the package
    assert toy.train is module.train and train is module.train and callable(toy.train)
    assert toy.ToyTrainConfig is module.ToyTrainConfig and set(toy.TOY_PRESETS) == {"default", "figure", "tiny"}
    assert not [name for name in toy.__all__ if isinstance(getattr(toy, name), types.ModuleType)]
    assert not hasattr(toy, "TrainConfig") and not hasattr(toy, "PRESETS")  # one name, one meaning


def test_training_is_deterministic_for_a_seed(corpus, tmp_path):
    a = train(tmp_path / "a", *tiny(steps=30), progress=False, log=lambda _: None)
    b = train(tmp_path / "b", *tiny(steps=30), progress=False, log=lambda _: None)
    ca, cb = read_curves(tmp_path / "a"), read_curves(tmp_path / "b")
    assert list(ca["step"]) == [0, 10, 20, 30]
    assert ca.equals(cb)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["value"] for r in a] == [r["value"] for r in b]
    c = train(tmp_path / "c", *tiny(steps=30, seed=1), progress=False, log=lambda _: None)
    assert [r["value"] for r in c] != [r["value"] for r in a]


def test_resume_continues_bit_identically(corpus, tmp_path):
    train(tmp_path / "straight", *tiny(steps=40, checkpoint_every=20), progress=False)
    train(tmp_path / "split", *tiny(steps=20, checkpoint_every=20), progress=False)
    with open(tmp_path / "split" / "curves.jsonl", "a") as handle:  # a line logged after the checkpoint, then a crash
        handle.write(json.dumps({"step": 25, "loss": 99.0}) + "\n")
    train(tmp_path / "split", *tiny(steps=40, checkpoint_every=20), resume=True, progress=False, log=lambda _: None)
    assert read_curves(tmp_path / "split").equals(read_curves(tmp_path / "straight"))
    ws, wt = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(ws[k], wt[k]) for k in ws)


def test_softmax_grows_a_much_larger_bos_sink_than_relu_attention(corpus, tmp_path):
    """The direction of Guo et al. 2024 on the tiny configuration, seed 0 (numbers in the report)."""
    train(tmp_path / "softmax", *tiny("softmax"), progress=False)
    train(tmp_path / "relu", *tiny("relu"), progress=False)
    soft, relu = summarize(read_curves(tmp_path / "softmax")), summarize(read_curves(tmp_path / "relu"))
    assert soft["final_bos_attention"] > 0.5  # measured 0.72 after 200 steps
    assert relu["final_bos_attention"] < 0.1  # measured 0.03
    assert soft["final_bos_attention"] > 10 * relu["final_bos_attention"]
    assert soft["final_bos_share"] > 2 * relu["final_bos_share"]  # also as a share of each row: 0.72 vs 0.19
    assert soft["final_backcopy_risk"] < 0.5 and relu["final_backcopy_risk"] < 0.5  # both learned the task


def test_a_trained_toy_loads_back_through_the_zoo(corpus, tmp_path):
    out = tmp_path / "run"
    results = train(out, *tiny("sink-logit", steps=20), progress=False)
    model = zoo.load(f"toy:{out}", device="cpu")
    assert isinstance(model, ToyTransformer) and model.variant == "sink-logit"
    info = zoo.info(model)
    assert (info.family, info.n_layers, info.n_heads, info.n_kv_heads, info.positional) == \
        ("causal-lm", 1, 1, 1, "absolute")
    assert info.bos_token_id == BOS_ID and info.vocab_size == VOCAB_SIZE and len(info.weights_sha256) == 64
    assert "variant=sink-logit" in info.source and info.causal
    dataset = data.from_text(model, TEXT, window=16, max_windows=2)
    assert (dataset.tensor()[:, 0] == BOS_ID).all()
    # the reloaded model reproduces the training run's last logged evaluation exactly
    from workbench.toy.tasks import load_task
    from workbench.toy.train import evaluate_step

    task = load_task(out)
    inputs, targets = task.batch(np.random.default_rng([0, 2]), preset("tiny")[1].eval_size, split="eval")
    last = read_curves(out).iloc[-1]
    assert evaluate_step(model, task, inputs, targets)["bos_attention"] == pytest.approx(last["bos_attention"], abs=1e-6)
    early = load_toy(f"{out}@0")
    assert not torch.equal(early.blocks[0].attn.W_Q, model.blocks[0].attn.W_Q)
    assert results.provenance["seed"] == 0 and results.provenance["git_commit"] is not None
    assert results.provenance["variant"] == "sink-logit" and "packages" in results.provenance
    assert set(results.metrics()) >= {"loss", "backcopy_risk", "bigram_risk", "bos_attention", "sink_slot",
                                      "v_bos_norm", "resid_bos_norm"}


def test_probes_and_catalogue_interventions_run_on_a_trained_toy(corpus, tmp_path):
    from workbench import experiment, probes
    from workbench.toy.tasks import load_task

    out = tmp_path / "run"
    train(out, *tiny("softmax", steps=20), progress=False)
    model = zoo.load(f"toy:{out}", device="cpu")
    windows = load_task(out).dataset(8, seed=1)
    assert len(windows) == 8 and (windows.tensor()[:, 0] == BOS_ID).all() and windows.window == 32
    _, cache = model.run_with_cache(windows.tensor(), names_filter="blocks.0.attn.hook_pattern")
    direct = cache["blocks.0.attn.hook_pattern"][:, 0, 1:, 0].mean().item()
    sinks = probes.sinks(model, windows, progress=False)
    assert sinks.value("first_token_attention", layer=0, head=0) == pytest.approx(direct, abs=1e-6)
    results = experiment.run(model, windows, ["scale-sink:gamma=1", "mask-sink", "zero-sink-value"], progress=False)
    delta = {r["intervention"]: r["value"] for r in results if r["metric"] == "delta_loss"}
    assert delta["scale-sink(gamma=1.0)"] == pytest.approx(0.0, abs=1e-6), delta  # identity edit: baseline logits
    assert delta["mask-sink"] != 0 and np.isfinite(delta["zero-sink-value"])


def test_a_checkpoint_refuses_a_model_of_another_variant(corpus, tmp_path):
    out = tmp_path / "run"
    model_cfg, train_cfg = tiny("softmax", steps=10)
    train(out, model_cfg, train_cfg, progress=False)
    relu_model = ToyTransformer(ToyConfig(**{**model_cfg.to_dict(), "attention": "relu"}))
    with pytest.raises(InputError, match="'softmax'-attention model.*'relu'"):
        load_weights(relu_model, out / "model.safetensors")
    wider = ToyTransformer(ToyConfig(**{**model_cfg.to_dict(), "d_model": 128}))
    with pytest.raises(InputError, match="d_model"):
        load_weights(wider, out / "model.safetensors")
    with pytest.raises(InputError, match="not 'relu'"):
        load_toy(out, variant="relu")
    with pytest.raises(InputError, match="snapshots of this run: \\[0, 10\\]"):
        load_toy(f"{out}@7")


def test_an_output_directory_holding_another_run_is_refused(corpus, tmp_path):
    out = tmp_path / "run"
    train(out, *tiny("softmax", steps=10), progress=False)
    with pytest.raises(InputError, match="different run.*attention: 'softmax' there, 'relu' asked"):
        train(out, *tiny("relu", steps=10), progress=False)
    with pytest.raises(InputError, match="different run"):
        train(out, *tiny("relu", steps=10), resume=True, progress=False)
    with pytest.raises(InputError, match="already holds this run.*--resume"):
        train(out, *tiny("softmax", steps=10), progress=False)
    train(out, *tiny("relu", steps=10), force=True, progress=False)
    assert json.loads((out / "run.json").read_text())["variant"] == "relu"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty and holds no toy run"):
        train(foreign, *tiny(steps=10), force=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_char_lm_task_trains_and_logs_sink_curves(corpus, tmp_path):
    assert set(TASKS) == {"bigram-backcopy", "char-lm"}
    train(tmp_path / "lm", *tiny("gated", task="char-lm", steps=20), progress=False)
    curves = read_curves(tmp_path / "lm")
    assert curves["loss"].iloc[-1] < curves["loss"].iloc[0]
    assert {"bos_attention", "gate", "v_bos_norm", "resid_bos_norm"} <= set(curves)
    assert "backcopy_risk" not in curves


# --------------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------------


def test_train_help_teaches_with_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "sinkbench train --task bigram-backcopy --attention softmax" in out


@pytest.mark.parametrize("args, message", [
    (["--attention", "linear"], "unknown attention variant 'linear': available softmax, softmax1, sigmoid, relu, "
                                "gated, sink-logit, kv-bias"),
    (["--task", "copying"], "unknown task 'copying': available bigram-backcopy, char-lm"),
    (["--steps", "0"], "argument --steps: 0 is out of range: allowed >= 1"),
    (["--steps", "-5"], "argument --steps: -5 is out of range: allowed >= 1"),
    (["--lr", "nan"], "argument --lr: nan is not a finite number: allowed (0, inf)"),
    (["--preset", "huge"], "unknown preset 'huge'"),
])
def test_train_bad_input_is_one_line(args, message, tmp_path, capsys):
    # in-process, as `python -m workbench.cli train ...` runs it (test_cli.py has the one subprocess test)
    try:
        code = cli.main(["train", "--out", str(tmp_path / "x"), *args])
    except SystemExit as done:  # argparse's own checks
        code = done.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("sinkbench") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_resume_with_nothing_to_resume(corpus, tmp_path, capsys):
    from workbench import toy

    out = tmp_path / "fresh"
    assert cli.main(["train", "--preset", "tiny", "--steps", "2", "--out", str(out), "--resume"]) == 2
    assert "holds no toy run to resume" in capsys.readouterr().err and not out.exists()
    lines = []  # the library starts the run and says so (what the figure recipe relies on)
    train(out, *tiny(steps=2), resume=True, progress=False, log=lines.append)
    assert lines[0] == f"nothing to resume in {out}: starting the run" and toy.holds_run(out)


@pytest.mark.parametrize("field, value", [("lr", float("nan")), ("lr", 0.0), ("weight_decay", float("inf")),
                                          ("beta2", 1.0), ("adam_eps", float("nan")), ("lr", "1e-3")])
def test_float_settings_refuse_nan_and_out_of_range(field, value):
    with pytest.raises(InputError, match="learning rate|weight decay|beta2|AdamW eps"):
        ToyTrainConfig(**{field: value})


def test_model_floats_and_the_device_are_checked_before_anything_is_written(tmp_path):
    with pytest.raises(InputError, match="eps = nan is not a finite number"):
        ToyConfig(eps=float("nan"))
    with pytest.raises(InputError, match="rotary_base"):
        ToyConfig(rotary_base=float("inf"))
    with pytest.raises(InputError, match="device 'banana' is not a device name"):
        train(tmp_path / "dev", *tiny(steps=2), device="banana", progress=False)
    assert not (tmp_path / "dev").exists()


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    import safetensors.torch

    model = build(small("softmax"))
    path = save_weights(model, tmp_path / "w.safetensors", step=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_weights(model, path, step=2)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # the old file, no temporary left
    assert read_metadata(path)["step"] == 1


def test_train_command_writes_a_run_and_refuses_to_overwrite_it(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--preset", "tiny", "--attention", "kv-bias", "--steps", "20", "--seed", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    assert "final_bos_attention" in capsys.readouterr().out
    assert (out / "results.json").is_file() and (out / "curves.csv").is_file()
    assert cli.main(argv[:-2] + ["--attention", "relu", "--out", str(out)]) == 2
    assert "holds a different run" in capsys.readouterr().err
    assert cli.main([*argv[:6], "40", *argv[7:], "--resume", "--json"]) == 0
    assert json.loads((out / "run.json").read_text())["steps_done"] == 40
    assert json.loads(capsys.readouterr().out)["steps"] == 40  # --json: stdout is the summary alone
    # the zoo's commands take the toy by name
    assert cli.main(["eval", "--model", f"toy:{out}", "--corpus", "shakespeare", "--window", "32",
                     "--n-windows", "4"]) == 0
    assert "perplexity" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------------------------------


def test_emergence_figure_trains_every_variant_and_plots_their_curves(corpus, tmp_path):
    from workbench import gallery
    from workbench.core.results import Results

    done = gallery.build(["toy-emergence"], out=tmp_path / "fig", quick=True, log=lambda _: None)
    assert done[0]["name"] == "toy-emergence" and (tmp_path / "fig" / "toy-emergence.png").is_file()
    results = Results.load(tmp_path / "fig" / "data" / "toy-emergence.json")
    assert {r["variant"] for r in results} == set(VARIANTS)
    assert results.provenance["toy_preset"] == "tiny" and set(results.provenance["runs"]) == set(VARIANTS)
    plotted = __import__("pandas").read_csv(tmp_path / "fig" / "toy-emergence.csv")
    assert set(plotted["metric"]) == {"bos_attention", "bos_share", "backcopy_risk", "bigram_risk", "v_bos_norm",
                                      "resid_bos_norm"}
    assert plotted["step"].max() == 20
    assert "softmax" in done[0]["caption"] and "Guo et al. 2024" in done[0]["caption"]
    # a rebuild reuses the cached Results and the trained runs: the same numbers come back
    again = gallery.build(["toy-emergence"], out=tmp_path / "fig", quick=True, log=lambda _: None)
    assert again[0]["caption"] == done[0]["caption"]
