"""The gallery's machinery on stub recipes (no model runs): every figure gets its PNG, PDF, CSV, caption and
Results; reruns reuse what did not change; the cache key holds the checksum of every weights file a recipe
reads (the trained ViTs, the toy checkpoints); missing data and bad requests fail clearly.
The real gallery is built by tests/integration/test_gallery.py."""

import pytest

from workbench import gallery, plots, zoo
from workbench.core.errors import InputError
from workbench.core.results import Results, identity_hash
from workbench.gallery import builder, identity, registry
from workbench.gallery.registry import FigureContext, FigureError, Recipe

PROV = {"model": "stub-lm", "data_source": "corpus:austen", "window": 16, "n_sequences": 2, "bos_policy": "bos"}


def sink_rows():
    rows = [{"metric": "first_token_attention", "layer": layer, "head": head, "value": 0.1 * layer + 0.05 * head}
            for layer in range(3) for head in range(2)]
    return Results(rows + [{"metric": "sink_ratio", "eps": 0.3, "layer": None, "head": None, "value": 0.5}], PROV)


def effect_rows():
    rows = [{"intervention": "none", "metric": "loss", "value": 3.0, "ci_low": 2.9, "ci_high": 3.1}]
    rows += [{"intervention": name, "metric": "delta_loss", "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01}
             for name, v in (("mask-sink", 0.2), ("zero-sink-value", 0.05))]
    return Results(rows, PROV)


@pytest.fixture()
def stubs(monkeypatch):
    """A registry of four stub recipes in place of the real ones; `calls` counts their computations."""
    gallery.recipes()  # import the real recipe modules first, so that they do not register into the stubs
    monkeypatch.setattr(registry, "REGISTRY", {})
    calls = []

    def counted(name, make):
        def compute(ctx):
            calls.append((name, ctx.model_name, dict(ctx.params), ctx.seed))
            return make()
        return compute

    grid = registry.recipe("stub-grid", title="Stub grid", reproduces="Nobody 2025, Fig. 1",
                           params={"n": 8}, quick_params={"n": 2})(counted("stub-grid", sink_rows))
    grid.plotter(lambda results, ctx: plots.sink_grid(results))
    grid.captioner(lambda results, ctx: f"Sink ratio {results.value('sink_ratio', eps=0.3, layer=None):.0%}.")
    effects = registry.recipe("stub-effects", title="Stub effects", reproduces="Nobody 2025, Table 2")(
        counted("stub-effects", effect_rows))
    effects.plotter(lambda results, ctx: plots.intervention_effects(results))
    encoder = registry.recipe("stub-encoder", title="Encoder only", reproduces="Nobody", families=("encoder",))(
        counted("stub-encoder", sink_rows))
    encoder.plotter(lambda results, ctx: plots.sink_grid(results))
    fixed = registry.recipe("stub-fixed", title="Tied to tiny-bert", reproduces="Nobody", model="tiny-bert",
                            families=("encoder",))(counted("stub-fixed", sink_rows))
    fixed.plotter(lambda results, ctx: plots.sink_grid(results))
    return calls


def test_the_gallery_holds_every_figure_and_reruns_reuse_results(stubs, tmp_path):
    out = tmp_path / "gallery"
    logged = []
    done = gallery.build(None, out, model="tiny-llama", all_=True, quick=True, log=logged.append)
    # the encoder-only recipe is skipped on a causal LM; the one tied to tiny-bert draws on tiny-bert
    assert [d["name"] for d in done] == ["stub-grid", "stub-effects", "stub-fixed"]
    assert any("stub-encoder" in line and "skipped: needs a encoder model" in line for line in logged)
    assert {(name, model) for name, model, *_ in stubs} == {("stub-grid", "tiny-llama"),
                                                             ("stub-effects", "tiny-llama"), ("stub-fixed", "tiny-bert")}
    assert ("stub-grid", "tiny-llama", {"n": 2}, 0) in stubs  # quick parameters override the defaults
    index, html = (out / "index.md").read_text(), (out / "index.html").read_text()
    for figure in done:
        name = figure["name"]
        assert f"`{name}`" in index and f"{name}.png" in html
        for suffix in (".png", ".pdf", ".csv", ".caption.txt"):
            assert (out / f"{name}{suffix}").is_file()
        assert Results.load(out / "data" / f"{name}.json").provenance["identity_hash"]
    assert done[0]["caption"] == "Sink ratio 50%. Reproduces: Nobody 2025, Fig. 1."
    assert done[1]["caption"] == "Stub effects Reproduces: Nobody 2025, Table 2."  # no captioner: the title

    stubs.clear()
    drawn = (out / "stub-effects.png").stat().st_mtime_ns
    (out / "stub-grid.png").unlink()
    again = gallery.build(["stub-grid", "stub-effects"], out, model="tiny-llama", quick=True, log=lambda _: None)
    assert not stubs  # nothing changed: the cached Results are reused
    assert (out / "stub-effects.png").stat().st_mtime_ns == drawn  # ... a figure still on disk is not redrawn
    assert (out / "stub-grid.png").is_file()  # ... and a missing one is
    assert [a["caption"] for a in again] == [d["caption"] for d in done[:2]]
    assert "stub-fixed" in (out / "index.md").read_text()  # a figure drawn earlier stays in the gallery

    gallery.build(["stub-grid"], out, model="tiny-llama", log=lambda _: None)  # other parameters
    gallery.build(["stub-grid"], out, model="tiny-llama", seed=1, log=lambda _: None)  # another seed
    gallery.build(["stub-grid"], out, model="tiny-llama", seed=1, force=True, log=lambda _: None)
    assert [(params, seed) for _, _, params, seed in stubs] == [({"n": 8}, 0), ({"n": 8}, 1), ({"n": 8}, 1)]


def test_a_recipe_for_another_family_is_refused_by_name(stubs, tmp_path):
    with pytest.raises(FigureError, match="figure 'stub-encoder' needs a encoder model; tiny-llama is a causal-lm"):
        gallery.build(["stub-encoder"], tmp_path, model="tiny-llama", log=lambda _: None)


def test_missing_data_fails_naming_the_recipe(tmp_path):
    entry = Recipe("broken-figure", "t", "nobody", compute=lambda ctx: None, plot=lambda r, c: plots.sink_grid(r))
    ctx = FigureContext("tiny-llama", tmp_path, {})
    with pytest.raises(FigureError, match="figure 'broken-figure': missing data .*metric 'sink_attention'"):
        builder.draw(entry, Results([{"metric": "loss", "value": 1.0}], PROV), ctx)
    with pytest.raises(FigureError, match="figure 'broken-figure': its Results are empty"):
        builder.draw(entry, Results([], PROV), ctx)


def test_bad_figure_requests(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="unknown figure 'sink-grd': available .*sink-grid"):
        gallery.build(["sink-grd"], tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="not writable"):
        gallery.build(["sink-grid"], blocker / "out", model="tiny-llama")
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FigureError, match="not available offline: run `sinkbench models fetch smollm2-135m`"):
        gallery.build(["sink-grid"], tmp_path / "figs", model="smollm2-135m")


def test_the_real_recipes_are_registered_in_gallery_order():
    known = gallery.recipes()
    assert list(known)[:3] == ["streaming-sinks", "streaming-curves", "attention-maps"]
    assert {"sink-grid", "encoder-sinks", "toy-emergence", "vit-attention-maps", "vit-norm-histograms"} <= set(known)
    for entry in known.values():
        assert entry.plot is not None and entry.caption is not None and entry.reproduces


# --------------------------------------------------------------------------------------------------
# The cache key holds the weights a recipe reads
# --------------------------------------------------------------------------------------------------


def _fake_model(name: str, content: bytes) -> None:
    """A cached zoo model with these weights bytes and a manifest of their checksum (what training writes)."""
    directory = zoo.model_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / zoo.WEIGHTS).write_bytes(content)
    zoo.write_manifest(directory, name, source="test", licence="none")


def _counting(monkeypatch, entry: Recipe, effect=lambda: None) -> list:
    calls = []

    def compute(ctx):
        effect()
        calls.append(1)
        return sink_rows()

    monkeypatch.setattr(entry, "compute", compute)
    return calls


def test_the_identity_records_the_checksum_of_the_bundled_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "cache"))
    _fake_model("smollm2-135m", b"weights")
    entry = gallery.recipes()["sink-grid"]
    weights = identity.identity(entry, FigureContext("smollm2-135m", tmp_path, {}))["weights"]
    assert weights == {"smollm2-135m": zoo.manifest.check("smollm2-135m")["weights_sha256"]}
    assert identity.identity(entry, FigureContext("tiny-llama", tmp_path, {}))["weights"] == {"tiny-llama": None}


def test_retrained_vits_invalidate_the_cached_vision_results(tmp_path, monkeypatch):
    from workbench.gallery.recipes_vision import MODELS

    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "cache"))
    entry = gallery.recipes()["vit-norm-histograms"]
    ctx = FigureContext(entry.model, tmp_path / "out", dict(entry.params))
    # first build: the ViTs are trained on first use, inside compute
    calls = _counting(monkeypatch, entry, effect=lambda: [_fake_model(name, b"trained " + name.encode())
                                                          for name in MODELS if not zoo.is_cached(name)])
    builder.compute_results(entry, ctx)
    builder.compute_results(entry, ctx)
    assert len(calls) == 1  # the identity saved is the one with the weights compute trained
    _fake_model(MODELS[1], b"retrained with another recipe")
    builder.compute_results(entry, ctx)
    assert len(calls) == 2  # retrained weights: the old Results are not reused
    builder.compute_results(entry, ctx)
    assert len(calls) == 2
    saved = Results.load(ctx.out_dir / "data" / f"{entry.name}.json").provenance["identity_hash"]
    assert saved == identity_hash(identity.identity(entry, ctx))


def test_retrained_toys_invalidate_the_cached_toy_results(tmp_path, monkeypatch):
    from workbench.gallery.recipes_toy import runs
    from workbench.toy.checkpoint import WEIGHTS

    entry = gallery.recipes()["toy-emergence"]
    ctx = FigureContext(entry.model, tmp_path / "out", {**entry.params, **entry.quick_params})
    directories = runs(ctx)

    def train_missing():
        for variant, directory in directories.items():
            if not (directory / WEIGHTS).is_file():
                directory.mkdir(parents=True, exist_ok=True)
                (directory / WEIGHTS).write_bytes(variant.encode())

    calls = _counting(monkeypatch, entry, effect=train_missing)
    builder.compute_results(entry, ctx)
    builder.compute_results(entry, ctx)
    assert len(calls) == 1
    (directories["relu"] / WEIGHTS).write_bytes(b"relu, trained for longer")
    builder.compute_results(entry, ctx)
    assert len(calls) == 2
    (directories["softmax"] / WEIGHTS).unlink()  # a run deleted: retrained, and the Results recomputed
    builder.compute_results(entry, ctx)
    assert len(calls) == 3
