"""No traceback, ever: every subcommand, fed a bad value, answers with exit status 2 and one line on stderr
that names the value (issue 13). In-process, on tiny models; a traceback would be an exception escaping main()."""

import os
from pathlib import Path

import numpy as np
import pytest

from workbench import cli

# (argv, what the one line must name); {d} is a directory of bad files (the `files` fixture)
CASES = [
    (["nope"], "invalid choice: 'nope'"),
    # models, data
    (["models", "--json", "--bogus"], "--bogus"),
    (["models", "verify", "nope"], "unknown model 'nope'"),
    (["models", "verify", "tiny-llama"], "'tiny-llama' is a tiny random model"),
    (["models", "fetch", "nope"], "unknown model 'nope'"),
    (["data", "fetch", "nope"], "unknown corpus or image set 'nope'"),
    # eval: numbers, names, devices, inputs, outputs
    (["eval", "--model", "tiny-llama", "--window", "nan"], "--window: 'nan'"),
    (["eval", "--model", "tiny-llama", "--window", "1.5"], "--window: '1.5'"),
    (["eval", "--model", "tiny-llama", "--window", "-5"], "--window: -5"),
    (["eval", "--model", "tiny-llama", "--window", "100000"], "window T for tiny-llama = 100000"),
    (["eval", "--model", "tiny-llama", "--n-windows", "-1"], "--n-windows: -1"),
    (["eval", "--model", "tiny-llama", "--batch-size", "0"], "--batch-size: 0"),
    (["eval", "--model", "tiny-llama", "--seed", "x"], "--seed: 'x'"),
    (["eval", "--model", "nope"], "unknown model 'nope'"),
    (["eval", "--model", "tiny-llama", "--prompts", "nope"], "'nope'"),
    (["eval", "--model", "tiny-llama", "--device", "banana"], "device 'banana' is not a device name"),
    (["eval", "--model", "tiny-llama", "--device", "cuda:99"], "device 'cuda:99' is not available"),
    (["eval", "--model", "tiny-llama", "--text-file", "{d}/binary.txt"], "binary.txt: not a text file"),
    (["eval", "--model", "tiny-llama", "--text-file", "{d}/latin1.txt"], "latin1.txt: not UTF-8"),
    (["eval", "--model", "tiny-llama", "--text-file", "{d}/missing.txt"], "missing.txt does not exist"),
    (["eval", "--model", "tiny-llama", "--jsonl", "{d}/binary.txt"], "binary.txt"),
    (["eval", "--model", "tiny-llama", "--json", "{d}/out.xlsx"], "'.xlsx'"),
    (["eval", "--model", "tiny-llama", "--json", "{d}/a-file/out.json"], "a-file"),
    # probe: sinks, thresholds, selections, images
    (["probe", "nope"], "'nope'"),
    (["probe", "sinks", "--model", "tiny-llama", "--sink", "auto:abc"], "'auto:abc'"),
    (["probe", "sinks", "--model", "tiny-llama", "--sink", "tok:\\q"], "unknown escape \\q"),
    (["probe", "sinks", "--model", "tiny-llama", "--sink", "first:5"], "'first:5'"),
    (["probe", "sinks", "--model", "tiny-llama", "--eps", "nan"], "--eps: nan"),
    (["probe", "sinks", "--model", "tiny-llama", "--eps", "2"], "--eps: 2"),
    (["probe", "massive-activations", "--model", "tiny-llama", "--abs-threshold", "nan"], "--abs-threshold: nan"),
    (["probe", "massive-activations", "--model", "tiny-llama", "--ratio-threshold", "-1"], "--ratio-threshold: -1"),
    (["probe", "sink-tokens", "--model", "tiny-llama", "--top", "0"], "--top: 0"),
    (["probe", "sinks", "--model", "tiny-llama", "--layers", "abc"], "'abc'"),
    (["probe", "sinks", "--model", "tiny-llama", "--layers", "99"], "layer 99"),
    (["probe", "attention-maps", "--model", "tiny-llama", "--heads", "x"], "'x'"),
    (["probe", "sinks", "--model", "tiny-llama", "--under", "test-time-register"], "--under"),
    (["probe", "sinks", "--model", "tiny-llama", "--json", "{d}/a-file/o.json"], "a-file"),
    (["probe", "patch-norms", "--model", "tiny-vit", "--norm-rule", "ratio:nan"], "'ratio:nan'"),
    (["probe", "image-attention", "--model", "tiny-vit", "--high-norm", "abs:nan"], "'abs:nan'"),
    (["probe", "image-attention", "--model", "tiny-vit", "--under", "bogus"], "'bogus'"),
    (["probe", "image-attention", "--model", "tiny-vit", "--images", "{d}/garbage.npz"], "garbage.npz"),
    (["probe", "image-attention", "--model", "tiny-vit", "--images", "{d}/truncated.npz"], "truncated.npz"),
    (["probe", "image-attention", "--model", "tiny-vit", "--images", "{d}/garbage.npy"], "garbage.npy"),
    (["probe", "image-attention", "--model", "tiny-vit", "--images", "{d}/words.npy"], "dtype <U1"),
    # run: interventions, sinks, specs, outputs
    (["run", "--model", "tiny-llama", "-i", "scale-sink:gamma=nan"], "gamma = nan"),
    (["run", "--model", "tiny-llama", "-i", "scale-sink:gamma=abc"], "gamma='abc'"),
    (["run", "--model", "tiny-llama", "-i", "nope"], "'nope'"),
    (["run", "--model", "tiny-llama", "-i", "mask-sink:layers=abc"], "'abc'"),
    (["run", "--model", "tiny-llama", "-i", "mask-sink", "--sink", "auto:abc"], "'auto:abc'"),
    (["run", "--model", "tiny-llama", "-i", "mask-sink", "--metric", "nope"], "'nope'"),
    (["run", "--model", "tiny-llama", "-i", "mask-sink", "--window", "nan"], "--window: 'nan'"),
    (["run", "--model", "tiny-llama", "-i", "mask-sink", "--device", "banana"], "'banana'"),
    (["run", "--model", "tiny-llama", "--sweep", "head", "-i", "mask-sink", "--layers", "abc"], "'abc'"),
    (["run", "--sweep", "diagonal"], "'diagonal'"),
    (["run", "--model", "tiny-llama", "-i", "mask-sink", "--json", "{d}/r.xlsx"], "'.xlsx'"),
    (["run", "--model", "tiny-llama", "-i", "mask-sink", "--json", "{d}/a-file/r.json"], "a-file"),
    (["run", "{d}/bad.toml"], "bad.toml"),
    (["run", "{d}/binary.toml"], "binary.toml: not a UTF-8 text file"),
    (["run", "{d}/missing.toml"], "missing.toml"),
    # figures
    (["figures", "nope"], "'nope'"),
    (["figures", "--all", "--seed", "nan"], "--seed: 'nan'"),
    (["figures", "sink-grid", "--model", "nope", "--out", "{d}/figs"], "'nope'"),
    (["figures", "sink-grid", "--model", "tiny-llama", "--out", "{d}/a-file/figs"], "a-file"),
    # train (toy) and train-vit
    (["train", "--out", "{d}/run", "--steps", "nan"], "--steps: 'nan'"),
    (["train", "--out", "{d}/run", "--steps", "0"], "--steps: 0"),
    (["train", "--out", "{d}/run", "--lr", "nan"], "--lr: nan"),
    (["train", "--out", "{d}/run", "--lr", "-1"], "--lr: -1"),
    (["train", "--out", "{d}/run", "--weight-decay", "inf"], "--weight-decay: inf"),
    (["train", "--out", "{d}/run", "--layers", "0"], "--layers: 0"),
    (["train", "--out", "{d}/run", "--threads", "0"], "--threads: 0"),
    (["train", "--out", "{d}/run", "--attention", "linear"], "'linear'"),
    (["train", "--out", "{d}/run", "--task", "copying"], "'copying'"),
    (["train", "--out", "{d}/run", "--preset", "huge"], "'huge'"),
    (["train", "--out", "{d}/run", "--seq-len", "2"], "sequence length = 2"),
    (["train", "--out", "{d}/run", "--preset", "tiny", "--device", "banana"], "'banana'"),
    (["train", "--out", "{d}/run", "--preset", "tiny", "--resume"], "holds no toy run to resume"),
    (["train", "--out", "{d}/a-file/run", "--preset", "tiny"], "a-file"),
    (["train-vit", "--out", "{d}/vit", "--registers", "99"], "register count 99"),
    (["train-vit", "--out", "{d}/vit", "--lr", "nan"], "--lr: nan"),
    (["train-vit", "--out", "{d}/vit", "--noise", "nan"], "--noise: nan"),
    (["train-vit", "--out", "{d}/vit", "--steps", "0"], "steps = 0"),
    (["train-vit", "--out", "{d}/vit", "--image-size", "7"], "image size = 7"),
    (["train-vit", "--preset", "nope"], "'nope'"),
    (["train-vit", "--out", "{d}/a-file/vit", "--steps", "100"], "a-file"),
    # stream: the values its argument checking refuses
    (["stream", "--model", "tiny-llama", "--window", "nan"], "--window: invalid int value: 'nan'"),
    (["stream", "--model", "tiny-llama", "--sinks", "1.5"], "'1.5'"),
    (["stream", "--model", "tiny-llama", "--policy", "nope"], "'nope'"),
    (["stream", "--model", "tiny-llama", "--window", "0"], "W = 0"),
    (["stream", "--model", "tiny-llama", "--replace-sinks", "tab"], "'tab'"),
    # --attention-block on every command that runs a model (issue 14): B >= 1, full or auto
    *[([*command, "--attention-block", value], names) for command in (
        ["eval", "--model", "tiny-llama"], ["probe", "sinks", "--model", "tiny-llama"],
        ["run", "--model", "tiny-llama", "-i", "mask-sink"], ["figures", "sink-grid", "--out", "{d}/figs"],
        ["explore", "--model", "tiny-llama", "--out", "{d}/explore"], ["stream", "--model", "tiny-llama"])
      for value, names in (("0", "--attention-block: 0 is out of range: allowed B >= 1"),
                           ("-8", "--attention-block: -8 is out of range"),
                           ("1.5", "--attention-block: '1.5' is not an integer, full or auto"),
                           ("everything", "'everything' is not an integer, full or auto (allowed: B >= 1"))],
    (["stream", "--model", "tiny-llama", "-i", "nope"], "unknown intervention 'nope'"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad-input")
    (d / "binary.txt").write_bytes(b"\x00\x01\xff\xfe binary \x89PNG")
    (d / "latin1.txt").write_bytes("café au lait, une histoire\n".encode("latin-1"))
    (d / "binary.toml").write_bytes(b"\xff\xfe\x00 not text")
    (d / "bad.toml").write_text("[model\nname =")
    (d / "a-file").write_text("a file where a directory belongs")
    np.savez(d / "ok.npz", images=np.zeros((2, 16, 16, 3), np.uint8))
    (d / "truncated.npz").write_bytes((d / "ok.npz").read_bytes()[:200])
    (d / "garbage.npz").write_bytes(b"\x00\x01\xff not an archive")
    (d / "garbage.npy").write_bytes(b"\x89PNG\r\n\x1a\n not an array")
    np.save(d / "words.npy", np.array([["a"] * 3] * 2))
    return d


def run_main(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as done:  # argparse's own checks
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_subcommand_is_fed_bad_values():
    fed = {argv[0] for argv, _ in CASES}
    assert fed >= {command.NAME for command in cli.COMMANDS} - {"explore"}


@pytest.mark.parametrize("argv, names", CASES, ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_bad_input_is_exit_2_and_one_line_naming_the_value(argv, names, files, capsys, monkeypatch):
    monkeypatch.setenv("SINKBENCH_PROGRESS", "0")
    code, _, err = run_main([arg.format(d=files) for arg in argv], capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("sinkbench") and names in err, err
    assert not (files / "run").exists() and not (files / "vit").exists()  # refused before anything was written


def test_unwritable_outputs_are_refused_before_the_model_loads(files, capsys, monkeypatch):
    # a read-only mount (root may write anywhere else, so the mount is what is simulated here)
    from workbench import zoo

    locked = files / "read-only"
    locked.mkdir(exist_ok=True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).startswith(str(locked))
                        else real_access(path, mode))
    monkeypatch.setattr(zoo, "load", lambda *args, **kwargs: pytest.fail("the model loaded before the output check"))
    for argv in (["eval", "--model", "tiny-llama", "--json", f"{locked}/e.json"],
                 ["probe", "sinks", "--model", "tiny-llama", "--json", f"{locked}/p.json"],
                 ["run", "--model", "tiny-llama", "-i", "mask-sink", "--json", f"{locked}/r.csv"],
                 ["train", "--preset", "tiny", "--out", f"{locked}/run"],
                 ["train-vit", "--steps", "100", "--out", f"{locked}/vit"]):
        code, _, err = run_main(argv, capsys)
        assert code == 2 and len(err.splitlines()) == 1 and "not writable" in err and str(locked) in err, err
    assert list(locked.iterdir()) == []


def test_verify_reports_every_model_and_fails_at_the_end(files, capsys, monkeypatch):
    monkeypatch.setenv("SINKBENCH_CACHE", str(files / "empty-cache"))
    code, out, err = run_main(["models", "verify", "--full", "nope", "tiny-llama", "smollm2-135m"], capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 3 and [line.split(":")[2].strip() for line in lines] == ["nope", "tiny-llama", "smollm2-135m"]
    assert "unknown model 'nope'" in lines[0] and "no cached weights to verify" in lines[1]
    assert "not fetched yet" in lines[2] and "3 of 3 models failed" in out


def test_an_os_error_mid_run_is_one_line(capsys, monkeypatch):
    # a disk that fills up after every check passed: still one line, not a traceback
    from workbench.cli import data

    def full_disk(args):
        raise OSError(28, "No space left on device", "/somewhere/r.json")

    monkeypatch.setattr(data, "list_corpora", full_disk)
    code, _, err = run_main(["data"], capsys)
    assert code == 2 and err == "sinkbench: error: No space left on device (/somewhere/r.json)\n"
