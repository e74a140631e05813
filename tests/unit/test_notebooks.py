"""Each notebook has one source, notebooks/NN_name.py (jupytext percent format); the committed .ipynb is what
notebooks/sync.py generates from it, without outputs. The test run executes the .ipynb with nbmake (`make test`)."""

import importlib.util
import json
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
FIX = "run `.venv/bin/python notebooks/sync.py`"


def load_sync():
    spec = importlib.util.spec_from_file_location("notebook_sync", NOTEBOOKS / "sync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = load_sync()
SOURCES = sync.sources()


def test_every_notebook_has_one_source():
    assert SOURCES, "no notebooks/NN_name.py sources found"
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == {p.stem for p in SOURCES}, (
        f"an .ipynb without a NN_name.py source, or a source without its .ipynb: {FIX}")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name} has outputs: {FIX}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_is_what_its_source_generates(source):
    path = source.with_suffix(".ipynb")
    assert path.read_text() == sync.notebook(source), f"{path.name} differs from {source.name}: {FIX}"
    assert sync.notebook(source) == sync.notebook(source)  # stable ids: regenerating gives the same bytes


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_source_survives_a_round_trip_through_jupyter(source):
    # What jupytext writes back when the .py is saved from Jupyter (jupytext.toml: no header) is the .py itself,
    # and every cell is a code or markdown cell with source: no cell got lost in a stray `# %%`.
    text = source.read_text()
    nb = jupytext.reads(text, fmt=sync.FORMAT)
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "-all"}
    assert jupytext.writes(nb, fmt=sync.FORMAT) == text, f"{source.name} is not in jupytext's percent form"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {source.name[:2]} · ")
    assert all(cell.source.strip() for cell in nb.cells), f"{source.name} has an empty cell"
