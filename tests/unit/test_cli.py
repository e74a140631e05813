import json
import math
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import cli
from workbench.core.results import Results


def run_main(argv, capsys):
    """`sinkbench ARGV` in this process: (exit status, stdout, stderr); argparse's exits count as statuses."""
    try:
        code = cli.main(argv)
    except SystemExit as done:
        code = done.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_json_lists_the_bundled_models(capsys):
    code, out, err = run_main(["models", "--json"], capsys)
    assert code == 0, err
    names = {row["name"] for row in json.loads(out)}
    assert {"smollm2-135m", "minilm-l6", "gemma3-270m"} <= names


def test_the_console_script_starts_and_lists_models_without_the_heavy_stack():
    # The one subprocess test: the installed entry point really starts (`sinkbench = workbench.cli:main`).
    script = shutil.which("sinkbench", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "workbench.cli"]
    out = subprocess.run([*command, "models", "--json"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "smollm2-135m" in {row["name"] for row in json.loads(out.stdout)}
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "workbench.cli" in imported
    assert not imported & {"torch", "transformers", "transformer_lens", "matplotlib", "pandas"}


def test_python_m_workbench_cli_is_the_same_entry_point(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sinkbench", "models", "fetch"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("workbench.cli", run_name="__main__")  # what `python -m workbench.cli` runs
    assert done.value.code == 2 and capsys.readouterr().err.startswith("sinkbench: error: name the models")


COMMANDS = [[]] + [[command.NAME] for command in cli.COMMANDS]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "sinkbench")
def test_every_help_teaches_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_top_level_help_lists_every_command_without_building_their_options(monkeypatch, capsys):
    for command in cli.COMMANDS:
        monkeypatch.setattr(command, "add_arguments", lambda parser: pytest.fail("options built for --help"))
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for command in cli.COMMANDS:
        assert re.search(rf"^    {command.NAME}\b", out, re.MULTILINE)


def test_a_command_builds_only_its_own_options(monkeypatch, capsys):
    for command in cli.COMMANDS:
        if command.NAME != "data":
            monkeypatch.setattr(command, "add_arguments", lambda parser: pytest.fail("another command's options"))
    code, out, _ = run_main(["data"], capsys)
    assert code == 0 and "austen" in out


def test_a_registry_listing_is_read_only_for_help(monkeypatch, capsys):
    monkeypatch.setattr(cli.run, "listing", lambda: pytest.fail("the catalogue was read for an argument error"))
    code, _, err = run_main(["run", "--sweep", "diagonal"], capsys)
    assert code == 2 and "invalid choice: 'diagonal'" in err
    monkeypatch.setattr(cli.run, "listing", lambda: "\nTHE CATALOGUE")
    code, out, _ = run_main(["run", "--help"], capsys)
    assert code == 0 and out.rstrip().endswith("THE CATALOGUE")


def test_eval_on_a_text_file_writes_loss_rows(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("A small text about attention sinks and the first token. " * 8)
    out = tmp_path / "eval.json"
    assert cli.main(["eval", "--model", "tiny-llama", "--text-file", str(text), "--window", "64", "--json", str(out)]) == 0
    res = Results.load(out)
    loss = res.value("loss", intervention="none")
    assert res.value("perplexity") == pytest.approx(math.exp(loss))
    assert res.provenance["bos_policy"] == "bos" and res.provenance["model"] == "tiny-llama"
    assert "loss" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["eval", "--model", "nope"], "unknown model 'nope'"),
    (["eval", "--model", "tiny-llama", "--prompts", "random", "--window", "100000"], "allowed 2..256"),
    (["eval", "--model", "tiny-bert", "--prompts", "random"], "encoder"),
    (["models", "fetch"], "--all"),
])
def test_bad_input_is_one_line_not_a_traceback(args, message, capsys):
    code, _, err = run_main(args, capsys)  # a traceback would be an exception escaping main()
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("sinkbench: error:") and message in err


def test_one_sequence_has_no_interval_and_says_so(tmp_path, capsys):
    # one sequence: nothing to bootstrap, so the intervals are NaN and the summary prints n/a (issue 13, defect 1)
    assert cli.main(["eval", "--model", "tiny-llama", "--window", "32", "--n-windows", "1"]) == 0
    assert "loss        " in (out := capsys.readouterr().out) and "(95% CI n/a, 31 tokens)" in out
    one = tmp_path / "one.txt"
    one.write_text("a")  # one token after BOS
    assert cli.main(["run", "--model", "tiny-llama", "--text-file", str(one), "-i", "mask-sink"]) == 0
    assert re.search(r"mask-sink .* \[n/a\]", capsys.readouterr().out)


def test_a_finished_output_is_kept_and_force_recomputes_it(tmp_path, capsys, monkeypatch):
    from workbench.experiment.spec import RunSpec

    out = tmp_path / "r.json"
    argv = ["run", "--model", "tiny-llama", "--window", "16", "--n-windows", "2", "-i", "mask-sink", "--json", str(out)]
    assert cli.main(argv) == 0 and f"wrote 5 rows to {out}" in capsys.readouterr().out
    assert cli.main(argv) == 0 and f"kept {out}: it holds these 5 rows already" in capsys.readouterr().out
    forced = []
    execute = RunSpec.execute
    monkeypatch.setattr(RunSpec, "execute", lambda self, **kw: forced.append(kw["force"]) or execute(self, **kw))
    assert cli.main([*argv, "--force"]) == 0 and f"wrote 5 rows to {out}" in capsys.readouterr().out
    assert forced == [True]


def test_help_and_argument_errors_import_no_torch():
    # start-up (issue 13): every --help but run's (its catalogue is torch code) answers without the heavy stack
    names = [command.NAME for command in cli.COMMANDS if command.NAME != "run"]
    script = ("import sys, contextlib, io\nfrom workbench import cli\n"
              f"for argv in [[n, '--help'] for n in {names!r}] + [['probe', 'nope'], ['train', '--steps', 'x']]:\n"
              "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
              "        try: cli.main(argv)\n"
              "        except SystemExit: pass\n"
              "print(sorted({'torch', 'transformers', 'transformer_lens', 'pandas'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
