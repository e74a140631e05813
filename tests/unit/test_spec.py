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


def test_a_sweep_spec_runs_the_attribution_mode_and_groups_it_names(tmp_path):
    """`attribution = "ig"` with `attribution_groups`: the estimate runs with that many paths (its rows' cost),
    --explain says what it costs, and an option of another mode is one error naming the key."""
    path = write(tmp_path, '''
model = "tiny-llama"
[data]
window = 12
n_windows = 3
[sweep]
intervention = "mask-sink"
over = "head"
attribution = "ig"
attribution_groups = 4
''')
    spec = RunSpec.load(path)
    assert "ig, 4 paths x 1 step + the clean pass: up to 5 forward+backward passes" in spec.explain()
    results = spec.execute(progress=False)
    estimate = results.filter(metric="attribution_delta_loss")
    assert len(estimate.rows) == 8 and {r["mode"] for r in estimate} == {"ig"}  # 2 layers x 4 heads
    assert {r["cost_fb"] for r in estimate} == {5.0}  # 4 groups x 1 step + the clean pass
    assert -1 <= results.provenance["attribution_spearman"] <= 1
    assert "atp: 1 forward + 1 backward pass" in RunSpec.load(SPECS / "head-sweep.toml").explain()
    for text, message in (('attribution = "igg"', r"\[sweep\]\.attribution = 'igg': allowed true \(atp\)"),
                          ('attribution = "atp*"\nattribution_groups = 4',
                           r"\[sweep\]\.attribution_groups is an option of attribution = 'ig'"),
                          ('attribution = "ig"\nattribution_groups = 0', r"\[sweep\]\.attribution_groups")):
        bad = write(tmp_path, f'model = "tiny-llama"\n[sweep]\nintervention = "mask-sink"\nover = "head"\n{text}\n')
        with pytest.raises(InputError, match=message):
            RunSpec.load(bad)


def test_the_command_line_names_the_attribution_groups():
    import argparse

    from workbench.cli import run as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--model", "tiny-llama", "-i", "zero-head", "--sweep", "head", "--attribution", "ig",
                              "--attribution-groups", "6"])
    spec = command.spec_from_flags(args)
    assert spec.sweep["attribution"] == "ig" and spec.attribution_options() == {"groups": 6}
    with pytest.raises(InputError, match="--attribution needs --sweep head"):
        command.spec_from_flags(parser.parse_args(["--model", "tiny-llama", "-i", "zero-head",
                                                   "--attribution-groups", "6"]))
    with pytest.raises(InputError, match="is an option of attribution = 'ig'"):
        command.spec_from_flags(parser.parse_args(["--model", "tiny-llama", "-i", "zero-head", "--sweep", "head",
                                                   "--attribution", "--attribution-groups", "6"]))


def test_the_module_docstring_example_is_a_valid_spec():
    import tomllib

    from workbench.experiment import spec as module

    doc = module.__doc__
    start = doc.index("```toml") + len("```toml")
    example = RunSpec.from_dict(tomllib.loads(doc[start:doc.index("```", start)]), "<docstring>")
    assert example.attribution_mode() == "ig" and example.attribution_options() == {"groups": 27}
    assert "ig, 27 paths x 1 step" in example.explain()


def test_the_spec_and_the_command_line_know_the_attribution_modes_and_defaults():
    """The spec (torch-free) and `sinkbench run --attribution` copy attribution.MODES and attribution_sweep's
    defaults: they stay equal."""
    import argparse
    import inspect

    from workbench.cli import run as command
    from workbench.experiment import attribution, spec

    assert spec.ATTRIBUTION_MODES == tuple(attribution.MODES)
    defaults = inspect.signature(attribution.attribution_sweep).parameters
    assert (spec.IG_GROUPS, spec.GRADDROP_LAYERS) == (defaults["groups"].default, defaults["graddrop"].default)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    choices = next(a.choices for a in parser._actions if "--attribution" in a.option_strings)
    assert tuple(choices) == spec.ATTRIBUTION_MODES
