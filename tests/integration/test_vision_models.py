"""The small ViTs trained here (`sinkbench models fetch --all` trains them): accuracy, HF-eager agreement,
and the measurements the vision notebook and figures report."""

import pytest
import torch

from workbench import experiment, probes, vision, zoo

AGREEMENT = 1e-4


def trained(name: str):
    if not zoo.is_cached(name):
        pytest.fail(f"{name} is not trained: run `make models` (or `sinkbench models fetch {name}`) first")
    return zoo.load(name)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def plain():
    return trained("shapes-vit")


@pytest.fixture(scope="module")
def registers():
    return trained("shapes-vit-reg4")


def test_the_trained_vits_classify_held_out_shapes(plain, registers):
    for model in (plain, registers):
        images = vision.image_set(model, "shapes", n=256, seed=1)
        assert experiment.evaluate(model, images, progress=False).value("accuracy") > 0.85


def test_probes_agree_with_hf_eager_on_the_register_vit(registers):
    images = vision.image_set(registers, "shapes", n=16, seed=1)
    res = probes.sinks(registers, images, sink="reg", progress=False)
    hf, _ = zoo.hf_reference("shapes-vit-reg4")
    with torch.no_grad():
        attentions = hf(pixel_values=images.inputs(), output_attentions=True).attentions
    worst = 0.0
    for layer, pattern in enumerate(attentions):
        expected = pattern[:, :, :65, 65:].sum(-1).mean(dim=(0, 2))  # every non-register query, to the 4 registers
        for head in range(pattern.shape[1]):
            worst = max(worst, abs(expected[head].item() - res.value("sink_attention", layer=layer, head=head)))
    assert worst <= AGREEMENT


def test_register_tokens_receive_attention_and_removing_them_costs_accuracy(registers):
    images = vision.image_set(registers, "shapes", n=128, seed=1)
    att = probes.image_attention(registers, images, examples=0, progress=False)
    shares = att.filter(metric="attention_share", kind="registers").df
    assert shares.value.max() > 4 / 69  # some head gives the 4 registers more than a uniform share
    res = experiment.run(registers, images, ["mask-sink:sink=reg"], progress=False)
    assert res.value("kl", intervention="mask-sink(sink='reg')") > 0


def test_the_vision_figures_build_with_their_data(plain, registers, tmp_path):
    import pandas as pd

    from workbench import gallery

    names = ["vit-attention-by-kind", "vit-attention-maps", "vit-norm-maps", "vit-norm-histograms"]
    built = gallery.build(names, out=tmp_path, quick=True, log=lambda line: None)
    assert [f["name"] for f in built] == names and all((tmp_path / f["png"]).is_file() for f in built)
    shares = pd.read_csv(tmp_path / "vit-attention-by-kind.csv")
    totals = shares.groupby(["model", "metric", "layer"]).value.sum()
    assert ((totals - 1).abs() < 1e-4).all() and set(shares.model) == {"shapes-vit", "shapes-vit-reg4"}
    histogram = pd.read_csv(tmp_path / "vit-norm-histograms.csv")
    assert (histogram.groupby(["model", "layer"]).value.sum() == 32 * 64).all()  # quick: 32 images x 64 patches
