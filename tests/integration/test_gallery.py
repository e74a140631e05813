"""The real gallery: every registered recipe computes on the bundled and trained models (reduced `quick`
parameters), draws its figure and writes its data; a rebuild reuses everything."""

import pandas as pd
import pytest

from workbench import gallery, zoo
from workbench.core.results import Results

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def models():
    missing = [name for name in ("smollm2-135m", "minilm-l6", "shapes-vit", "shapes-vit-reg4") if not zoo.is_cached(name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not in the cache: run `make models` (or `sinkbench models fetch --all`)")


def test_every_registered_figure_is_drawn_with_its_data(models, tmp_path, monkeypatch):
    out = tmp_path / "figures"
    done = gallery.build(None, out, model="smollm2-135m", all_=True, quick=True, log=lambda _: None)
    known = gallery.recipes()
    assert [figure["name"] for figure in done] == list(known)  # nothing skipped, in registry order
    index, html = (out / "index.md").read_text(), (out / "index.html").read_text()
    for figure in done:
        name = figure["name"]
        assert f"`{name}`" in index and f"{name}.png" in html
        for suffix in (".png", ".pdf", ".caption.txt"):
            assert (out / f"{name}{suffix}").stat().st_size > 0
        assert len(pd.read_csv(out / f"{name}.csv")) > 0, f"{name}: the CSV of what is plotted is empty"
        results = Results.load(out / "data" / f"{name}.json")
        assert len(results) > 0 and results.provenance["identity_hash"] and results.provenance["recipe"] == name
        assert figure["caption"].endswith(f"Reproduces: {known[name].reproduces}.")
        assert figure["model"] == (known[name].model or "smollm2-135m")
    computed = []
    for entry in known.values():  # a rebuild with nothing changed computes nothing
        monkeypatch.setattr(entry, "compute", lambda ctx, name=entry.name: computed.append(name))
    again = gallery.build(None, out, model="smollm2-135m", all_=True, quick=True, log=lambda _: None)
    assert not computed and [a["caption"] for a in again] == [d["caption"] for d in done]
