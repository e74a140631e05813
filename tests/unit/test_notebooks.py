"""Notebooks are committed without outputs and match their builder (notebooks/build.py); the test run
executes them with nbmake (`make test`)."""

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"


def load_builder():
    spec = importlib.util.spec_from_file_location("notebook_builder", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name} has outputs"


def test_notebooks_match_their_builder():
    builder = load_builder()
    on_disk = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert set(builder.NOTEBOOKS) <= on_disk
    for name, cells in builder.NOTEBOOKS.items():
        notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in notebook["cells"]]
        assert sources == [src for _, src in cells], f"{name}.ipynb differs from notebooks/build.py: rebuild it"
