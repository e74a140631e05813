"""Issue 14, probes and interventions through the blocks:
every probe's rows and every intervention's loss, KL and top-1 are the same through the blocks as on the full
path (1e-6), on tiny models, with the shipping probes and catalogue (no test-side adapters)."""

import math

import pytest

from workbench import attention, experiment, probes, zoo
from workbench.attention import seam
from workbench.core import data
from workbench.core.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def windows(model, n=3, window=40, seed=0):
    return data.control_prompts(model, "random", window=window, n=n, seed=seed)


def same_rows(full, blocked, tol=1e-6):
    """Results with the same rows in the same order: equal labels, numbers within tol (relative above 1)."""
    assert len(full.rows) == len(blocked.rows)
    worst, where = 0.0, None
    for a, b in zip(full.rows, blocked.rows):
        assert a.keys() == b.keys()
        for key, x in a.items():
            y = b[key]
            if isinstance(x, float) and not isinstance(x, bool):
                if math.isnan(x):
                    assert math.isnan(y), (key, a)
                else:
                    diff = abs(x - y) / max(1.0, abs(x))
                    if str(a.get("metric")).endswith("_cv"):  # sqrt(E[x^2] - E[x]^2) / E[x]: cancellation amplifies
                        diff = abs(x - y) / abs(x) * tol / 1e-3  # fp32 noise by ~1/cv^2, so 1e-3 relative
                    if diff > worst:
                        worst, where = diff, (key, a.get("metric"), a.get("layer"), a.get("head"), x, y)
            elif key not in ("wall_seconds",):
                assert x == y, (key, a, b)
    assert worst <= tol, (worst, where)
    return worst


PROBES = [
    ("sinks", {}), ("sinks", {"sink": "0,5"}), ("sink_tokens", {"min_queries": 2, "min_count": 1}),
    ("attention_maps", {"layers": [0], "heads": [0, 1]}), ("heads", {}), ("norms", {}), ("implicit_bias", {}),
]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3", "tiny-bert"])
@pytest.mark.parametrize("probe, kwargs", PROBES)
def test_every_probe_reads_the_same_rows_through_the_blocks(name, probe, kwargs):
    model = zoo.load(name)
    ds = windows(model)
    fn = getattr(probes, probe)
    full = fn(model, ds, progress=False, **kwargs)
    for block in (1, 7, 64):
        with attention.blockwise(model, block=block, fuse=False) as run:
            same_rows(full, fn(model, ds, progress=False, **kwargs))
        assert run.n_blocks > 0 and run.largest_block == min(block, 40) and run.n_fused == 0
        with attention.blockwise(model, block=block) as run:
            same_rows(full, fn(model, ds, progress=False, **kwargs))
        if probe == "sinks" and name != "tiny-bert":  # reads only the sink's share: the causal layers run fused
            assert run.n_fused > 0  # (tiny-gemma3's sliding-window layers run the blocks)


def test_auto_sink_detection_is_the_same_through_the_blocks(tiny_llama):
    ds = windows(tiny_llama)
    full = probes.detect_sinks(tiny_llama, ds, eps=0.05, progress=False)
    with attention.blockwise(tiny_llama, block=7):
        assert probes.detect_sinks(tiny_llama, ds, eps=0.05, progress=False) == full


INTERVENTIONS = ["mask-sink", "zero-implicit-bias", "mean-implicit-bias", "zero-sink-value", "mean-sink-value",
                 "scale-sink:gamma=0.5", "softmax-plus-one", "window-attention:window=4", "zero-head:heads=1",
                 "patch-values:source=roll:1", "massive-activations:layers=0,dims=3"]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3", "tiny-bert"])
def test_every_intervention_gives_the_same_loss_kl_and_top1_through_the_blocks(name):
    model = zoo.load(name)
    ds = windows(model, n=4)
    chosen = [i for i in INTERVENTIONS if zoo.info(model).causal or not i.startswith("window-attention")]
    full = experiment.run(model, ds, chosen, progress=False)
    for block in (1, 7):
        with attention.blockwise(model, block=block) as run:
            same_rows(full, experiment.run(model, ds, chosen, progress=False))
        assert run.n_blocks > 0 and run.largest_block == block


def test_the_default_goes_blockwise_by_itself_when_the_full_pattern_would_not_fit(tiny_llama, monkeypatch):
    ds = windows(tiny_llama, n=2, window=200)
    full = probes.sinks(tiny_llama, ds, progress=False)
    blocks = []
    monkeypatch.setenv(attention.BUDGET_ENV, "200K")  # the full pattern of 2 x 200 tokens needs ~2.7 MB
    real = attention.blockwise

    def spy(*args, **kwargs):
        blocks.append(args[1] if len(args) > 1 else kwargs.get("block"))
        return real(*args, **kwargs)

    monkeypatch.setattr(seam, "blockwise", spy)  # what attention.path calls
    same_rows(full, probes.sinks(tiny_llama, ds, progress=False))
    assert blocks and all(b is not None and b < 200 for b in blocks)


def test_attention_block_in_the_api_and_the_spec_gives_the_same_rows(tiny_llama):
    from workbench.experiment.spec import RunSpec

    ds = windows(tiny_llama, n=3)
    chosen = ["mask-sink", "mean-implicit-bias", "scale-sink:gamma=0.5"]
    full = experiment.run(tiny_llama, ds, chosen, progress=False, attention_block="full")
    assert full.provenance["attention_block"] == "full"
    blocked = experiment.run(tiny_llama, ds, chosen, progress=False, attention_block=7)
    assert blocked.provenance["attention_block"] == 7
    full.provenance.pop("attention_block")
    same_rows(full, blocked)
    same_rows(experiment.evaluate(tiny_llama, ds, progress=False),
              experiment.evaluate(tiny_llama, ds, progress=False, attention_block="3"))
    swept = experiment.sweep(tiny_llama, ds, "mean-implicit-bias", over="layer", progress=False, attention_block=5)
    same_rows(experiment.sweep(tiny_llama, ds, "mean-implicit-bias", over="layer", progress=False), swept)
    for bad in (0, -1, 2.5, "many"):
        with pytest.raises(InputError, match=r"attention block must be an integer B >= 1 .*'full' or 'auto'; got"):
            experiment.run(tiny_llama, ds, chosen, progress=False, attention_block=bad)
    spec = {"model": "tiny-llama", "data": {"prompts": "random", "window": 40, "n_windows": 3},
            "run": {"interventions": ["mask-sink"], "attention_block": 0}}
    with pytest.raises(InputError, match=r"\[run\].attention_block must be an integer B >= 1.*got 0"):
        RunSpec.from_dict(spec)
    spec["run"]["attention_block"] = "auto"
    assert RunSpec.from_dict(spec).run["attention_block"] == "auto"


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_long_sequences_are_scored_in_query_chunks_with_the_same_numbers(name, monkeypatch):
    """Loss, KL, top-1 and the logit difference of the chunked scorer (no [b, T, V] logits, no baseline
    distributions kept whole) equal the full scorer's; the pass stops at the final residual stream."""
    from workbench.experiment import scoring

    model = zoo.load(name)
    ds = windows(model, n=3, window=60)
    chosen = ["mask-sink", "zero-implicit-bias", "scale-sink:gamma=0.5"]
    full = experiment.run(model, ds, chosen, progress=False, logit_pair=(5, 9), batch_size=2)
    monkeypatch.setattr(scoring, "LOGIT_CHUNK_BYTES", 1000)  # every sequence is "long"
    monkeypatch.setattr(scoring, "_CHUNK_BYTES", zoo.info(model).vocab_size * 4 * 2 * 7)  # 7 rows of 2 sequences
    scorer = scoring.scorer_for(zoo.info(model))
    resid = scorer.outputs(model, next(iter(ds.batches(2)))[1], [])
    assert resid.shape[-1] == zoo.info(model).d_model  # the forward stopped before the unembedding
    assert not model.hook_dict[scoring.FINAL_HOOK]._forward_hooks  # and left no hook behind
    same_rows(full, experiment.run(model, ds, chosen, progress=False, logit_pair=(5, 9), batch_size=2))


def test_image_attention_reads_the_same_rows_through_the_blocks():
    model = zoo.load("tiny-vit")
    from workbench.vision import image_set

    images = image_set(model, "shapes", n=4, seed=0)
    full = probes.image_attention(model, images, progress=False)
    for block in (1, 7):
        with attention.blockwise(model, block=block) as run:
            same_rows(full, probes.image_attention(model, images, progress=False))
        assert run.largest_block == block


def test_attribution_patching_is_refused_blockwise_with_the_reason(tiny_llama):
    from workbench.experiment.attribution import attribution_sweep

    ds = windows(tiny_llama, n=2)
    for opened in (attention.blockwise(tiny_llama, block=7), attention.policy(None, block=7)):
        with opened, pytest.raises(InputError, match=r"attribution patching needs the whole attention pattern.*"
                                                     r"block 7.*full path"):
            attribution_sweep(tiny_llama, ds, "zero-head", progress=False)
    with attention.policy(None, block="full"):
        assert len(attribution_sweep(tiny_llama, ds, "zero-head", progress=False, layers=[0]))


def test_the_length_recipes_stop_at_the_context_and_at_the_longest_of_each_model():
    from types import SimpleNamespace

    from workbench import gallery
    from workbench.gallery import recipes_survey_long

    def context(name, n_ctx, params):
        model = SimpleNamespace(sinkbench=SimpleNamespace(name=name, n_ctx=n_ctx))
        return SimpleNamespace(model=lambda: model, params=params)

    params = gallery.recipes()["sink-ratio-vs-length"].params
    assert recipes_survey_long._lengths(context("qwen2.5-0.5b", 32768, params)) == [64, 512, 2048, 8192, 32768]
    assert recipes_survey_long._lengths(context("gemma3-270m", 32768, params)) == [64, 512, 2048, 8192]
    assert recipes_survey_long._lengths(context("smollm2-135m", 8192, params)) == [64, 512, 2048, 8192]
    quick = gallery.recipes()["sink-ratio-vs-length"].quick_params
    assert recipes_survey_long._lengths(context("tiny-llama", 256, quick)) == [16, 32, 64]


# fused attention calls of the whole run (2 layers each pass): the baseline and the edited pass, plus
# patch-values' statistics pass (mean-sink-value's reads patterns, through the blocks); 2 fewer if the edited
# pass ran the blocks
FUSED = {"zero-sink-value": 4, "mean-sink-value": 4, "patch-values:source=roll:1,positions=0": 6}


@pytest.mark.parametrize("spec", list(FUSED))
def test_a_value_edit_reads_only_the_edited_keys_columns_and_runs_fused(tiny_llama, spec):
    """A value edit's restore term needs A[q, j] on the edited keys only (a KeyReader): on a blockwise pass the
    layers run fused, and the loss, KL and top-1 equal the full path's."""
    ds = windows(tiny_llama, n=4)
    full = experiment.run(tiny_llama, ds, [spec], progress=False)
    with attention.blockwise(tiny_llama, block=7) as run:
        same_rows(full, experiment.run(tiny_llama, ds, [spec], progress=False))
    assert run.n_fused == FUSED[spec]
