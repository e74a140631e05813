import io
import itertools

import pytest

from workbench.core import progress
from workbench.core.progress import progress_bar, progress_lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def shown(monkeypatch):
    monkeypatch.delenv("SINKBENCH_PROGRESS", raising=False)  # tests/conftest.py turns progress off


def test_a_log_gets_a_line_every_few_percent_not_a_frame_per_step(shown, capsys):
    assert list(progress_bar(range(1000), desc="sweep")) == list(range(1000))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 100 // progress.LOG_EVERY_PERCENT  # 5%, 10%, ... 100%
    assert lines[0].startswith("sweep: 50/1000 (5%), ") and lines[-1].startswith("sweep: 1000/1000 (100%), ")
    assert all(line.endswith(" s") and "\r" not in line for line in lines)


def test_a_short_bar_logs_every_step_and_a_lone_step_nothing(shown, capsys):
    list(progress_bar(["a", "b", "c"], desc="batches"))
    assert [line.split(",")[0] for line in capsys.readouterr().err.splitlines()] == [
        "batches: 1/3 (33%)", "batches: 2/3 (66%)", "batches: 3/3 (100%)"]
    list(progress_bar(["a"], desc="one"))
    assert capsys.readouterr().err == ""


def test_a_long_silence_gets_a_line_between_the_percent_marks(monkeypatch):
    clock = itertools.count(0, 20)  # every step takes 20 s
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    log = io.StringIO()
    list(progress_lines(range(1000), "slow", 1000, log))
    lines = log.getvalue().splitlines()
    assert lines[:2] == ["slow: 2/1000 (0%), 40.0 s", "slow: 4/1000 (0%), 80.0 s"]  # every 30 s at most


def test_off_switches_print_nothing(shown, monkeypatch, capsys):
    assert list(progress_bar(iter(range(50)), desc="off", enabled=False)) == list(range(50))
    monkeypatch.setenv("SINKBENCH_PROGRESS", "0")
    assert list(progress_bar(range(50), desc="off")) == list(range(50))
    assert capsys.readouterr().err == ""


def test_a_terminal_still_gets_the_live_bar(shown, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(progress.sys, "stderr", terminal)
    assert list(progress_bar(range(200), desc="live", total=200)) == list(range(200))
    assert "\r" in terminal.getvalue() and "live" in terminal.getvalue()  # tqdm redraws in place
