"""Issue 14, probes and interventions through the blocks:
every probe's rows and every intervention's loss, KL and top-1 are the same through the blocks as on the full
path (1e-6), on tiny models, with the shipping probes and catalogue (no test-side adapters)."""

import math

import pytest

from workbench import attention, experiment, probes, zoo
from workbench.core import data

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
        with attention.blockwise(model, block=block) as run:
            same_rows(full, fn(model, ds, progress=False, **kwargs))
        assert run.n_blocks > 0 and run.largest_block == min(block, 40)


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

    monkeypatch.setattr(attention, "blockwise", spy)
    same_rows(full, probes.sinks(tiny_llama, ds, progress=False))
    assert blocks and all(b is not None and b < 200 for b in blocks)
