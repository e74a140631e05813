import json
import math
import os

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


def sweep_like():
    rows = [{"intervention": name, "metric": metric, "layer": layer, "value": 0.1}
            for name in ("none", "mask-sink", "scale-sink(gamma=0.5)") for metric in ("loss", "kl") for layer in (0, 1)]
    return Results(rows, {"model": "m"})


@pytest.mark.parametrize("where, message", [
    ({"intervention": "scale-sink"}, r"intervention='scale-sink' matches none; the intervention values there are "
                                     r"'mask-sink', 'none', 'scale-sink\(gamma=0\.5\)'"),
    ({"metric": "kl", "intervention": "mask_sink"}, r"intervention='mask_sink' matches none among the rows with "
                                                   r"metric='kl'; the intervention values there are 'mask-sink'"),
    ({"metric": "delta_loss"}, r"metric='delta_loss' matches none; the metric values there are 'kl', 'loss'"),
    ({"metric": "kl", "head": 3}, r"no row has a column 'head'; the columns are intervention, layer, metric, value"),
    ({"intervention": ["a", "b"]}, r"intervention=\['a', 'b'\] matches none"),
])
def test_a_filter_that_matches_nothing_raises_listing_what_exists(where, message):
    res = sweep_like()
    with pytest.raises(InputError, match=message):
        res.filter(**where)
    assert len(res.filter(empty_ok=True, **where)) == 0  # the explicit opt-in for lookups that may find nothing
    with pytest.raises(InputError, match="these Results hold no rows"):
        Results([]).filter(metric="loss")


def test_value_says_which_labels_exist_or_how_several_rows_differ():
    res = sweep_like()
    with pytest.raises(InputError, match=r"found 0: intervention='scale' matches none .* 'scale-sink\(gamma=0\.5\)'"):
        res.value("loss", intervention="scale", layer=0)
    with pytest.raises(InputError, match=r"found 2; they differ in layer \(0, 1\): add those columns"):
        res.value("loss", intervention="none")
    assert res.value("loss", intervention="none", layer=1) == 0.1


def test_undefined_numbers_stay_nan_in_memory_and_null_on_disk(tmp_path):
    res = Results([{"metric": "loss", "value": 2.0, "ci_low": math.nan, "ci_high": math.nan},
                   {"metric": "first_massive_layer", "value": None}])
    row = res.rows[0]
    assert math.isnan(row["ci_low"]) and f"{row['value']:.4f} [{row['ci_low']:.4f}, {row['ci_high']:.4f}]"
    blob = json.loads(res.save(tmp_path / "r.json").read_text())
    assert blob["rows"][0]["ci_low"] is None  # strict JSON
    back = Results.load(tmp_path / "r.json")
    assert math.isnan(back.rows[0]["ci_low"]) and back.value("first_massive_layer") is None
    store = ResultStore(tmp_path / "s.json", {"spec": 1})
    store.add("u", [{"metric": "loss", "value": math.inf, "ci_low": math.nan}])
    again = ResultStore(tmp_path / "s.json", {"spec": 1})  # the journal keeps NaN and inf exactly
    assert again.rows("u")[0]["value"] == math.inf and math.isnan(again.rows("u")[0]["ci_low"])


def test_one_sequence_gives_nan_intervals_that_format(tiny_llama):
    from workbench import experiment
    from workbench.core import data

    one = data.from_text(tiny_llama, "a", window=8)  # one token of text + BOS: one sequence
    res = experiment.evaluate(tiny_llama, one, progress=False)
    row = res.filter(metric="loss").rows[0]
    assert row["n_sequences"] == 1 and math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert f"{row['value']:.4f} (95% CI {row['ci_low']:.4f}..{row['ci_high']:.4f})".endswith("(95% CI nan..nan)")


def test_finish_writes_leading_rows_first_and_a_corrupt_journal_is_refused(tmp_path):
    out = tmp_path / "run.json"
    store = ResultStore(out, {"spec": 2})
    store.add("a", [{"metric": "kl", "value": 1.0}])
    done = store.finish({"model": "m"}, leading_rows=[{"intervention": "none", "metric": "loss", "value": 3.0}])
    assert [r.get("intervention") for r in Results.load(out)] == ["none", None] and len(done) == 2
    journal = tmp_path / "other.json.partial.jsonl"
    journal.write_text('{"identity_ha')
    with pytest.raises(InputError, match="not a readable journal"):
        ResultStore(tmp_path / "other.json", {"spec": 3})


def test_an_output_path_is_checked_before_any_work(tmp_path):
    from workbench.core.results import check_output_path

    (tmp_path / "a-dir.json").mkdir()
    for path, message in ((tmp_path / "r.xlsx", "unknown result format '.xlsx'"),
                          (tmp_path / "a-dir.json", "is a directory")):
        with pytest.raises(InputError, match=message):
            check_output_path(path)
        with pytest.raises(InputError, match=message):
            ResultStore(path, {"spec": 1})
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere
            with pytest.raises(InputError, match="is not writable"):
                check_output_path(locked / "r.json")
    finally:
        locked.chmod(0o700)
