"""Experiments as data: TOML specs, --explain, and errors that point at the key."""

from pathlib import Path

import pytest

from workbench.core.errors import InputError
from workbench.core.results import Results
from workbench.experiment.spec import RunSpec

SPECS = Path(__file__).parents[2] / "docs" / "specs"


def write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_the_shipped_specs_parse_and_explain():
    for path in sorted(SPECS.glob("*.toml")):
        explained = RunSpec.load(path).explain()
        assert "model: smollm2-135m" in explained and "output:" in explained
    sweep = RunSpec.load(SPECS / "head-sweep.toml").explain()
    assert "270 units (30 layers x 9 heads)" in sweep and "attribution" in sweep


def test_a_spec_fully_determines_a_run(tmp_path):
    out = tmp_path / "res.json"
    path = write(tmp_path, f'''
model = "tiny-llama"
[data]
prompts = "random"
window = 16
n_windows = 3
[run]
interventions = ["mask-sink", "scale-sink:gamma=2,layers=1"]
out = "{out}"
[[run.intervention]]
name = "zero-head"
layers = 0
heads = "1-2"
''')
    spec = RunSpec.load(path)
    assert "zero-head(layers=0, heads='1-2')" in spec.explain()
    first = spec.execute(progress=False)
    again = RunSpec.load(path).execute(progress=False)  # deterministic: running the spec again gives the same rows
    key = lambda r: (r["intervention"], r["metric"], round(r["value"], 9))  # noqa: E731
    assert sorted(map(key, first)) == sorted(map(key, again))
    saved = Results.load(out)
    assert set(saved.provenance["interventions"]) == {"mask-sink", "scale-sink(layers=1, gamma=2.0)",
                                                       "zero-head(layers=0, heads='1-2')"}


@pytest.mark.parametrize("text, message", [
    ('model = "tiny-llama"\n[dta]\nwindow = 3\n', "unknown top-level key 'dta'"),
    ('model = "tiny-llama"\n[data]\nwindw = 3\n', r"\[data\]: unknown key 'windw'"),
    ('model = "tiny-llama"\n[data]\nwindow = "wide"\n', r"\[data\]\.window: expected int"),
    ('model = "tiny-llama"\n[run]\ninterventions = ["mask-sink", "scale-sink:gama=2"]\n',
     r"\[run\]\.interventions\[1\]: scale-sink: unknown parameter 'gama'"),
    ('model = "tiny-llama"\n[[run.intervention]]\nname = "nope"\n', r"\[\[run\.intervention\]\] #1: unknown intervention"),
    ('model = "tiny-llama"\n[sweep]\nover = "head"\n', r"\[sweep\] needs an intervention"),
    ('model = = "x"\n', "not valid TOML"),
])
def test_malformed_specs_point_at_the_key(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        RunSpec.load(write(tmp_path, text))
