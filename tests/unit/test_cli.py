import json
import subprocess
import sys

import pytest

from workbench import cli
from workbench.core.results import Results


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=300)


def test_models_json_lists_the_bundled_models():
    out = run_cli("models", "--json")
    assert out.returncode == 0, out.stderr
    names = {row["name"] for row in json.loads(out.stdout)}
    assert {"smollm2-135m", "minilm-l6", "gemma3-270m"} <= names


@pytest.mark.parametrize("command", [[], ["models"], ["data"], ["eval"]])
def test_every_help_teaches_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_eval_on_a_text_file_writes_loss_rows(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("A small text about attention sinks and the first token. " * 8)
    out = tmp_path / "eval.json"
    assert cli.main(["eval", "--model", "tiny-llama", "--text-file", str(text), "--window", "64", "--json", str(out)]) == 0
    res = Results.load(out)
    loss = res.value("loss", intervention="none")
    assert res.value("perplexity") == pytest.approx(__import__("math").exp(loss))
    assert res.provenance["bos_policy"] == "bos" and res.provenance["model"] == "tiny-llama"
    assert "loss" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["eval", "--model", "nope"], "unknown model 'nope'"),
    (["eval", "--model", "tiny-llama", "--prompts", "random", "--window", "100000"], "allowed 2..256"),
    (["eval", "--model", "tiny-bert", "--prompts", "random"], "encoder"),
    (["models", "fetch"], "--all"),
])
def test_bad_input_is_one_line_not_a_traceback(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("sinkbench: error:") and message in out.stderr
