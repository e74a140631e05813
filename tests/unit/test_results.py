import json
import math

import pytest

from workbench.core.errors import InputError
from workbench.core.results import Results, ResultStore, cached, provenance


def test_json_and_csv_round_trip_keep_rows_and_provenance(tmp_path):
    rows = [{"metric": "first_token_attention", "layer": 0, "head": h, "value": 0.1 * h} for h in range(3)]
    rows.append({"metric": "sink_ratio", "eps": 0.3, "value": 0.5, "layer": None, "head": None})
    res = Results(rows, {"model": "m", "seed": 1})
    for suffix in (".json", ".csv"):
        back = Results.load(res.save(tmp_path / f"r{suffix}"))
        assert back.provenance == {"model": "m", "seed": 1}
        assert back.value("first_token_attention", layer=0, head=2) == pytest.approx(0.2)
        assert back.value("sink_ratio", eps=0.3) == 0.5
    assert list(res.df.columns[:4]) == ["layer", "head", "metric", "value"]


def test_value_requires_exactly_one_row():
    res = Results([{"metric": "loss", "value": 1.0}, {"metric": "loss", "value": 2.0}])
    with pytest.raises(InputError, match="found 2"):
        res.value("loss")
    with pytest.raises(InputError, match="found 0"):
        res.value("kl")


def test_non_finite_values_are_stored_explicitly(tmp_path):
    res = Results([{"metric": "loss", "value": math.inf}, {"metric": "kl", "value": math.nan}])
    blob = json.loads(res.save(tmp_path / "r.json").read_text())
    assert [r["value"] for r in blob["rows"]] == ["inf", None]


def test_unknown_format_and_unwritable_directory(tmp_path):
    with pytest.raises(InputError, match="unknown result format"):
        Results([]).save(tmp_path / "r.xlsx")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create the output directory"):
        Results([]).save(blocker / "out" / "r.json")


def test_provenance_carries_versions_commit_and_seed():
    header = provenance("probe", seed=7)
    assert header["seed"] == 7 and header["packages"]["torch"]
    assert "git_commit" in header and header["experiment"] == "probe"


def test_a_killed_sweep_resumes_without_recomputing(tmp_path):
    out = tmp_path / "sweep.json"
    identity = {"model": "tiny", "spec": [1, 2, 3]}
    store = ResultStore(out, identity)
    store.add("layer=0", [{"metric": "loss", "layer": 0, "value": 1.0}])
    store.add("layer=1", [{"metric": "loss", "layer": 1, "value": 2.0}])
    with open(store.journal, "a") as handle:  # a crash mid-write leaves half a line
        handle.write('{"unit": "layer=2", "rows": [{"met')
    del store
    resumed = ResultStore(out, identity)
    assert resumed.done("layer=0") and resumed.done("layer=1") and not resumed.done("layer=2")
    resumed.add("layer=2", [{"metric": "loss", "layer": 2, "value": 3.0}])
    results = resumed.finish({"model": "tiny"})
    assert [r["value"] for r in results] == [1.0, 2.0, 3.0]
    assert not resumed.journal.exists()
    assert cached(out, identity) is not None and cached(out, {"model": "other"}) is None


def test_a_journal_from_another_run_is_refused(tmp_path):
    out = tmp_path / "sweep.json"
    ResultStore(out, {"spec": "a"}).add("u", [{"metric": "x", "value": 1}])
    with pytest.raises(InputError, match="different experiment"):
        ResultStore(out, {"spec": "b"})
