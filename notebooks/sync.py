"""Write the committed notebooks (NN_name.ipynb) from their sources (NN_name.py, jupytext percent format).

    .venv/bin/python notebooks/sync.py            # rewrite every .ipynb that differs from its source
    .venv/bin/python notebooks/sync.py --check    # name the stale ones and exit 1; writes nothing

Edit the .py sources, in any editor or in Jupyter (with jupytext installed, open the .py with "Open With >
Notebook"): `# %%` starts a code cell, `# %% [markdown]` a markdown cell whose lines are `# `-commented. The
.ipynb files are generated: committed without outputs and with stable cell ids (`NN-cc`), so an unchanged
source gives identical bytes; tests/unit/test_notebooks.py fails while one is stale, and `make test`
executes them (nbmake). They are not paired with the sources: a Jupyter session that saves outputs into an
.ipynb is undone by running this script. jupytext.toml keeps Jupyter from writing a YAML header into a source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).parent
FORMAT = "py:percent"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def sources() -> list[Path]:
    """The notebooks' sources in order: notebooks/NN_name.py."""
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def notebook(source: Path) -> str:
    """The .ipynb text that `source` generates: its cells, no outputs, no execution counts, stable ids."""
    nb = jupytext.read(source, fmt=FORMAT)
    nb.metadata = {"kernelspec": dict(KERNELSPEC)}  # jupytext's own metadata would record its version
    for index, cell in enumerate(nb.cells):
        cell.id = f"{source.name[:2]}-{index:02d}"  # jupytext draws random ids
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nbformat.writes(nb) + "\n"


def stale() -> list[Path]:
    """The .ipynb files that are missing or differ from what their source generates."""
    paths = [source.with_suffix(".ipynb") for source in sources()]
    return [path for path in paths if not path.is_file() or path.read_text() != notebook(path.with_suffix(".py"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="name the stale notebooks, exit 1; write nothing")
    args = parser.parse_args(argv)
    outdated = stale()
    for path in outdated:
        if args.check:
            print(f"{path.name} differs from {path.with_suffix('.py').name}: run notebooks/sync.py")
        else:
            path.write_text(notebook(path.with_suffix(".py")))
            print(f"wrote {path.relative_to(HERE.parent)}")
    return 1 if args.check and outdated else 0


if __name__ == "__main__":
    sys.exit(main())
