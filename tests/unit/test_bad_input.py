"""Bad input through the API, by class: every one is a single InputError naming the value and what is allowed,
raised before any forward pass; never a traceback from deep inside, never a silent no-op."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch

import interventions as iv
from workbench import experiment, probes, zoo
from workbench.core import cache, data, sites
from workbench.core.errors import InputError, ModelNotAvailable
from workbench.core.results import Results
from workbench.experiment import scoring
from workbench.experiment.spec import RunSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOT_FINITE = [math.nan, math.inf, -math.inf]


def prompts(model, n=4, window=16):
    return data.control_prompts(model, "random", window=window, n=n, seed=0)


def _float_parameters():
    """(catalogue name, parameter) for every float parameter of every catalogue entry."""
    out = []
    for name, cls in sorted(iv.CATALOGUE.items()):
        if name.startswith("test-"):
            continue
        hints = typing.get_type_hints(cls)
        out += [(name, f.name) for f in dataclasses.fields(cls) if f.init and hints.get(f.name) is float]
    return out


FLOAT_PARAMETERS = _float_parameters()


def test_the_catalogue_has_float_parameters_to_check():
    assert {("scale-sink", "gamma"), ("massive-activations", "abs_threshold"),
            ("massive-activations", "ratio_threshold")} <= set(FLOAT_PARAMETERS)


@pytest.mark.parametrize("name, parameter", FLOAT_PARAMETERS)
@pytest.mark.parametrize("value", NOT_FINITE + ["abc", True, None])
def test_every_float_parameter_refuses_nan_inf_and_non_numbers(name, parameter, value):
    with pytest.raises(InputError) as err:
        iv.get(name, **{parameter: value})
    message = str(err.value)
    assert f"{name}: {parameter}" in message and (repr(value) in message or str(value) in message), message


@pytest.mark.parametrize("name, parameter", FLOAT_PARAMETERS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_nan_written_in_a_spec_string_fails_before_any_forward_pass(tiny_llama, monkeypatch, name, parameter, text):
    calls = []
    for scorer_class in (scoring.Scorer, scoring.CausalLMScorer):  # the causal scorer overrides outputs()
        monkeypatch.setattr(scorer_class, "outputs", lambda *a, **k: calls.append(1))
    with pytest.raises(InputError, match=rf"{parameter} = (nan|inf|-inf) is not a finite number"):
        experiment.run(tiny_llama, prompts(tiny_llama), [f"{name}:{parameter}={text}"], progress=False)
    assert not calls  # scale-sink:gamma=nan once ran and reported delta_loss 0.0000


def test_a_user_defined_float_parameter_is_checked_too():
    @iv.register("test-sink-temperature")
    class SinkTemperature(iv.AttentionEdit):
        tau: float = 1.0
        steps: int = 3

        def edit(self, pattern, ctx, layer, scores=None):
            return None, None

    with pytest.raises(InputError, match=r"test-sink-temperature: tau = nan is not a finite number"):
        iv.parse("test-sink-temperature:tau=nan")
    with pytest.raises(InputError, match=r"test-sink-temperature: steps must be an integer, got 2\.5"):
        iv.get("test-sink-temperature", steps=2.5)
    with pytest.raises(InputError, match="window='nan' is not a valid int"):
        iv.parse("window-attention:window=nan")  # an int parameter: the parse itself refuses


@pytest.mark.parametrize("call, message", [
    (lambda m, d: probes.sinks(m, d, eps=[math.nan], progress=False), r"eps = nan is not a finite number: allowed \[0, 1\]"),
    (lambda m, d: probes.heads(m, d, eps=math.inf, progress=False), r"eps = inf is not a finite number"),
    (lambda m, d: probes.heads(m, d, dormant_attention=math.nan, progress=False), r"dormant_attention = nan"),
    (lambda m, d: probes.heads(m, d, dormant_output=math.nan, progress=False), r"dormant_output .* = nan"),
    (lambda m, d: probes.heads(m, d, dormant_output=0.0, progress=False), r"= 0 is out of range: allowed \(0, inf\)"),
    (lambda m, d: probes.massive_activations(m, d, abs_threshold=math.nan, progress=False),
     r"abs_threshold = nan is not a finite number: allowed \[0, inf\)"),
    (lambda m, d: probes.massive_activations(m, d, ratio_threshold=math.nan, progress=False),
     r"ratio_threshold = nan is not a finite number"),
    (lambda m, d: probes.massive_activations(m, d, ratio_threshold=0, progress=False), r"ratio_threshold = 0 is out"),
    (lambda m, d: probes.massive_activations(m, d, abs_threshold=-1, progress=False), r"abs_threshold = -1 is out"),
    (lambda m, d: probes.massive_activations(m, d, abs_threshold="100", progress=False), r"must be a number"),
    (lambda m, d: probes.sinks(m, d, sink="auto:nan", progress=False), r"eps = nan is not a finite number"),
])
def test_probe_thresholds_refuse_nan_and_out_of_range(tiny_llama, call, message):
    with pytest.raises(InputError, match=message):
        call(tiny_llama, prompts(tiny_llama))


@pytest.mark.parametrize("sink, message", [
    ("auto:abc", r"cannot read sink 'auto:abc': write auto:EPS"),
    ("auto:", r"cannot read sink 'auto:'"),
    ("automatic", r"cannot read sink 'automatic'"),
    ("auto:1.5", r"eps = 1\.5 is out of range"),
    ("tok:\\q", r"unknown escape \\q"),
    ("tok:\\x4", r"\\x needs 2 hex digits"),
    ("tok:\\u12G4", r"\\u needs 4 hex digits"),
    ("tok:a\\", r"a lone \\ at the end"),
    ("tok:", "sink token is empty"),
    ("first:0", r"first: takes a token sink"),
    ("first:auto:0.3", r"first: takes a token sink"),
    ("mask:1234", "cannot be rebuilt from its label"),
    ("callable:f", "pass the function itself"),
    ("patch:a,b", "write patch:ROW,COL"),
    (1.5, r"cannot read sink 1\.5"),
    ([1.5], "a list sink holds positions"),
    ([], "an empty sink"),
    (object(), "cannot read sink"),
    (torch.zeros(2, 3), "dtype bool"),
    (torch.zeros(2, 3, 4, dtype=torch.bool), r"\[sequences, T\]"),
    ([torch.zeros(2, 3, dtype=torch.bool)], "one 1-D bool mask per sequence"),
])
def test_malformed_sinks_are_one_clear_error(tiny_llama, sink, message):
    with pytest.raises(InputError, match=message):
        sites.SinkSpec.parse(sink)
    with pytest.raises(InputError, match=message):  # the same through a probe and an intervention
        probes.sinks(tiny_llama, prompts(tiny_llama), sink=sink, progress=False)
    with pytest.raises(InputError, match=message):
        iv.get("mask-sink", sink=sink)


@pytest.mark.parametrize("sink, message", [
    (torch.zeros(3, 16, dtype=torch.bool), r"sink mask has 3 rows .* sequence 3"),
    (torch.zeros(4, 15, dtype=torch.bool), r"sink mask of sequence 0 has 15 positions, the sequence has 16"),
    (torch.zeros(4, 16, dtype=torch.bool), r"sink mask:[0-9a-f]+: its keys do not occur in 4 of 4"),
    (lambda tokens: tokens < 0, r"sink callable:.*<lambda>: its keys do not occur in 4 of 4"),
    (lambda tokens: tokens, r"must return a bool mask shaped like the tokens \(4, 16\), got torch\.int64"),
    (lambda tokens: tokens[:, :3] > 0, r"must return a bool mask shaped like the tokens"),
])
def test_a_per_sequence_sink_that_does_not_fit_the_data_fails_before_any_pass(tiny_llama, monkeypatch, sink, message):
    calls = []
    for scorer_class in (scoring.Scorer, scoring.CausalLMScorer):  # the causal scorer overrides outputs()
        monkeypatch.setattr(scorer_class, "outputs", lambda *a, **k: calls.append(1))
    ds = prompts(tiny_llama)
    with pytest.raises(InputError, match=message):
        experiment.run(tiny_llama, ds, [iv.get("mask-sink", sink=sink)], progress=False)
    with pytest.raises(InputError, match=message):
        probes.sinks(tiny_llama, ds, sink=sink, progress=False)
    assert not calls


@pytest.mark.parametrize("call, message", [
    (lambda m, d: experiment.run(m, d, "mask-sink", progress=False), r"interventions: expected a list, got 'mask-sink'"),
    (lambda m, d: experiment.run(m, d, ["mask-sink"], metrics="loss", progress=False), r"metrics: expected a list"),
    (lambda m, d: experiment.run(m, d, iv.get("mask-sink"), progress=False), r"interventions: expected a list"),
    (lambda m, d: experiment.run(m, d, ["mask-sink"], logit_pair="ab", progress=False), r"logit pair: expected a list"),
    (lambda m, d: experiment.run(m, d, [3], progress=False), r"not an intervention: 3"),
    (lambda m, d: probes.sinks(m, d, eps=0.3, progress=False), r"eps: expected a list, got 0\.3; write e\.g\. \[0\.3\]"),
    (lambda m, d: probes.special_token_attention(m, d, targets="tok:."), r"targets: expected a list, got 'tok:\.'"),
    (lambda m, d: probes.sink_ratio_controls(m, kinds="random"), r"kinds: expected a list"),
    (lambda m, d: data.Dataset("abc", "x", "none", {}, None), r"sequences must be a list"),
    (lambda m, d: Results("abc"), r"Results rows must be a list of dicts"),
    (lambda m, d: Results([1, 2]), r"Results rows must be dicts, got 1"),
])
def test_a_scalar_where_a_list_belongs_is_one_clear_error(tiny_llama, call, message):
    with pytest.raises(InputError, match=message):
        call(tiny_llama, prompts(tiny_llama))


@pytest.mark.parametrize("layers, message", [
    (1.5, r"cannot read layers 1\.5"),
    (1.0, r"cannot read layers 1\.0"),
    ([0, 1.0], r"layer must be integers, got 1\.0"),
    ("1.5", r"cannot read layers '1\.5'"),
    (True, r"cannot read layers True"),
    ([True], r"layer must be integers, got True"),
    ({"a": 1}, r"cannot read layers"),
    (2, r"layer 2 is out of range for tiny-llama: allowed 0\.\.1"),
])
def test_layer_and_head_indices_must_be_integers(tiny_llama, layers, message):
    with pytest.raises(InputError, match=message):
        sites.parse_layers(layers, tiny_llama)
    with pytest.raises(InputError, match=message):
        probes.sinks(tiny_llama, prompts(tiny_llama), layers=layers, progress=False)
    with pytest.raises(InputError, match=message):
        experiment.run(tiny_llama, prompts(tiny_llama), [iv.get("mask-sink", layers=layers)], progress=False)
    assert sites.parse_layers(np.int64(1), tiny_llama) == (1,)  # numpy integers are integers
    assert sites.parse_layers(np.arange(2), tiny_llama) == (0, 1)


@pytest.mark.parametrize("heads, message", [(2.5, r"cannot read heads 2\.5"), ([0, 0.5], "head must be integers"),
                                            (4, r"head 4 is out of range for tiny-llama: allowed 0\.\.3")])
def test_head_indices_must_be_integers(tiny_llama, heads, message):
    with pytest.raises(InputError, match=message):
        iv.get("mask-sink", heads=heads).validate(tiny_llama)
    with pytest.raises(InputError, match=message):
        probes.attention_maps(tiny_llama, prompts(tiny_llama), heads=heads, progress=False)


@pytest.mark.parametrize("content, message", [
    (b'{"provenance": {}, "rows": [{"metric": "loss", "val', r"truncated or not valid JSON"),
    (b"", r"truncated or not valid JSON"),
    (b"[1, 2, 3]", r"holds no Results"),
    (b'{"rows": [1]}', r"holds no Results"),
    (b"\xff\xfe{}", r"not UTF-8 JSON"),
])
def test_a_truncated_or_foreign_results_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        Results.load(path)
    assert str(path) in str(err.value)


def test_a_truncated_csv_results_file_is_one_clear_error(tmp_path):
    path = Results([{"metric": "loss", "value": 1.0}], {"model": "m"}).save(tmp_path / "r.csv")
    path.write_text(path.read_text()[:20])  # cut inside the provenance line
    with pytest.raises(InputError, match="truncated or not a Results CSV"):
        Results.load(path)


@pytest.mark.parametrize("payload, message", [
    ("caf\xe9 au lait. ".encode("latin-1") * 20, r"not UTF-8 text \(invalid byte b'\\xe9' at offset 3"),
    (bytes(range(256)) * 4, r"not a text file \(a NUL byte at offset 0"),
    ("a sentence. ".encode("utf-16"), r"not a text file .*UTF-16"),
])
def test_text_that_is_not_utf8_is_refused_not_replaced(tiny_llama, tmp_path, payload, message):
    path = tmp_path / "input.txt"
    path.write_bytes(payload)
    with pytest.raises(InputError, match=message):
        data.from_file(tiny_llama, path, window=16)
    with pytest.raises(InputError, match=message):  # a patch source is read the same way
        experiment.run(tiny_llama, prompts(tiny_llama), [f"patch-values:source={path}"], progress=False)


def test_jsonl_that_is_not_utf8_names_the_line(tiny_llama, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not UTF-8 text .* at offset 30"):
        data.from_file(tiny_llama, path, window=16)
    path.write_bytes(b'{"text": "fine"}\n\x00\x01\x02\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not a text file"):
        data.from_jsonl(tiny_llama, path, window=16)
    path.write_bytes('\ufeff{"text": "a BOM is fine"}\n'.encode())
    assert len(data.from_jsonl(tiny_llama, path, window=16)) == 1


def test_bytes_given_as_text_are_refused(tiny_llama):
    with pytest.raises(InputError, match=r"the text must be a str, got bytes; decode it first"):
        data.from_text(tiny_llama, b"some bytes")


def test_data_prepared_for_another_model_is_refused(tiny_llama, monkeypatch):
    ds = prompts(tiny_llama)
    assert ds.tokenizer_id == zoo.info(tiny_llama).tokenizer_fingerprint() and ds.prepared_for == "tiny-llama"
    assert ds.provenance()["tokenizer_fingerprint"] == ds.tokenizer_id
    other = dataclasses.replace(ds, tokenizer_id="0123456789abcdef", prepared_for="smollm2-135m")
    for call in (lambda: probes.sinks(tiny_llama, other, progress=False),
                 lambda: experiment.run(tiny_llama, other, ["mask-sink"], progress=False),
                 lambda: experiment.attribution_sweep(tiny_llama, other, "mask-sink", progress=False)):
        with pytest.raises(InputError, match=r"tokenised for smollm2-135m .* tiny-llama has another tokenizer"):
            call()
    big = data.Dataset([np.array([1, 5, 100_000])], "hand-made", "as-given", {}, None)  # no tokenizer recorded
    with pytest.raises(InputError, match=r"token id 100000 is outside the vocabulary of tiny-llama: allowed 0\.\.\d+"):
        probes.sinks(tiny_llama, big, progress=False)
    long = data.Dataset([np.ones(300, dtype=np.int64)], "hand-made", "as-given", {}, None)
    with pytest.raises(InputError, match=r"a sequence of 300 tokens exceeds the context of tiny-llama"):
        experiment.run(tiny_llama, long, ["mask-sink"], progress=False)
    # the same tokenizer under another model name is fine: tiny-gemma3 shares the byte tokenizer
    gemma = zoo.load("tiny-gemma3")
    assert zoo.info(gemma).tokenizer_fingerprint() == ds.tokenizer_id
    assert len(probes.sinks(gemma, ds, progress=False)) > 0


def test_an_unknown_model_is_unknown_not_unfetched(tmp_path, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailable, match=r"unknown model 'gpt-17'. Available: smollm2-135m") as err:
        zoo.verify("gpt-17")
    assert "not fetched yet" not in str(err.value)
    with pytest.raises(InputError, match="tiny random model .* no cached weights"):
        zoo.verify("tiny-llama")
    with pytest.raises(ModelNotAvailable, match="not fetched yet"):  # a known model that is not cached
        zoo.verify("smollm2-135m")


@pytest.mark.parametrize("device, message", [
    ("gpu", r"device 'gpu' is not a device name \(available here: cpu"),
    ("cuda:99", r"device 'cuda:99' is not available in this torch build"),
    ("cpu:3", r"device 'cpu:3' is not available"),
    ("", r"device '' is not a device name"),
])
def test_an_invalid_or_unavailable_device_is_one_clear_error(device, message):
    with pytest.raises(InputError, match=message):
        zoo.load("tiny-llama", device=device)


@pytest.mark.parametrize("sweep, message", [
    ({"intervention": "mask-sink", "over": "heads"}, r"\[sweep\]\.over = 'heads': use 'layer' or 'head'"),
    ({"intervention": "mask-sink", "over": "token"}, r"\[sweep\]\.over = 'token'"),
    ({"intervention": "mask-sink", "layers": "a-b"}, r"\[sweep\]\.layers: cannot read layers 'a-b'"),
    ({"intervention": "mask-snk"}, r"\[sweep\]\.intervention: unknown intervention 'mask-snk'"),
    ({"intervention": "scale-sink:gamma=nan"}, r"\[sweep\]\.intervention: scale-sink: gamma = nan"),
])
def test_explain_refuses_an_invalid_sweep(sweep, message):
    with pytest.raises(InputError, match=message):
        RunSpec.from_dict({"model": "tiny-llama", "sweep": sweep}).explain()


@pytest.mark.parametrize("blob, message", [
    ({"run": {"metrics": ["loss", "klx"]}}, r"\[run\]\.metrics: unknown metric 'klx'"),
    ({"run": {"out": "r.xlsx"}}, r"\[run\]\.out = 'r\.xlsx': unknown result format"),
    ({"run": {"batch_size": 0}}, r"\[run\]\.batch_size = 0 is out of range: allowed 1\.\."),
    ({"data": {"window": 1}}, r"\[data\]\.window = 1 is out of range"),
])
def test_explain_refuses_values_that_are_wrong_for_any_model(blob, message):
    with pytest.raises(InputError, match=message):
        RunSpec.from_dict({"model": "tiny-llama", **blob})


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt), cache.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    # a process killed outright (SIGKILL) cannot clean up: the next write of the same path does
    code = ("import os, signal, sys\nfrom pathlib import Path\nfrom workbench.core.cache import atomic_path\n"
            "with atomic_path(Path(sys.argv[1])) as tmp:\n    tmp.write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.json.") and left[0].endswith(".tmp")
    live = tmp_path / f".out.json.{os.getppid()}.inflight.tmp"  # a write in flight in a live process stays
    live.write_text("x")
    Results([{"metric": "loss", "value": 1.0}]).save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name])
    assert Results.load(target).value("loss") == 1.0
    assert json.loads(target.read_text())["rows"][0]["value"] == 1.0


def test_a_killed_runs_staging_directory_is_removed_by_the_next_write(tmp_path):
    import subprocess

    from workbench.core.cache import remove_stale_temporaries

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".shapes-vit.{dead.pid}.abc.tmp"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "weights.bin").write_bytes(b"partial")
    live = tmp_path / f".shapes-vit.{os.getpid()}.def.tmp"
    live.mkdir()
    assert remove_stale_temporaries(tmp_path / "shapes-vit") == [stale]
    assert not stale.exists() and live.exists()
