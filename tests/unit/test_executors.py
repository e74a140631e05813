"""Executors on a real Ray cluster (a head started on loopback for this session, reached by its address):
a sweep, a multi-intervention run and a figure build give the same rows through `ray` as through `local`;
a worker SIGKILLed mid-job is replaced and its job retried (bounded); a driver SIGKILLed mid-sweep resumes
from its journal with nothing lost or duplicated; bad cluster options fail in seconds with one clear error."""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from workbench import experiment, gallery, plots
from workbench.core import data
from workbench.core.errors import InputError
from workbench.core.results import Results
from workbench.experiment.executors import ExecutorError, RayExecutor, check_options
from workbench.experiment.spec import RunSpec
from workbench.gallery import registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SWEEP = {"over": "head", "batch_size": 6, "rows_per_forward": 6, "progress": False}  # one unit per job: 8 jobs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_processes_under(temp_dir: str) -> None:
    """SIGKILL the processes whose command line names this Ray instance's temp dir, and their children
    (`ray stop` would stop every Ray instance on the machine)."""
    def ppid(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return -1

    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    ours = {p for p in pids if temp_dir in cmdline(p) and p != os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid in pids:
            if pid not in ours and ppid(pid) in ours:
                ours.add(pid)
                grew = True
    for pid in ours:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class RayHead:
    """A `ray start --head` under way: `address` waits for it (it mostly waits itself, so tests load models
    meanwhile)."""

    def __init__(self, process: subprocess.Popen, address: str):
        self.process, self._address, self._ready = process, address, False

    @property
    def address(self) -> str:
        if not self._ready:
            _, err = self.process.communicate(timeout=180)
            assert self.process.returncode == 0, err[-3000:]
            self._ready = True
        return self._address


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head on 127.0.0.1 (free ports, its own temp dir, 4 logical CPUs, no GPU), stopped at the end."""
    ray = pytest.importorskip("ray", reason="the Ray tests need the [distributed] extra (make setup installs it)")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    port = free_port()
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
               "--port", str(port), "--temp-dir", temp, "--include-dashboard=false", "--num-cpus", "4",
               "--num-gpus", "0", "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
    # a loopback-only head without token authentication (which Ray turns on where ~/.ray/auth_token exists)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield RayHead(process, f"127.0.0.1:{port}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if process.poll() is None:
            process.kill()
        stop_processes_under(temp)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(ray_head, by_value):
    with RayExecutor(address=ray_head.address, workers=2, cpus_per_worker=1) as executor:
        executor.start()
        yield executor


@pytest.fixture(scope="module")
def prompts(tiny_llama):
    return data.control_prompts(tiny_llama, "random", window=24, n=6, seed=0)


@pytest.fixture(scope="module")
def local_rows(tiny_llama, prompts):
    return experiment.sweep(tiny_llama, prompts, "zero-implicit-bias", **SWEEP).rows


def test_ray_writes_the_rows_values_and_intervals_of_a_local_run(ray_head, tiny_llama, prompts, local_rows,
                                                                 cluster, tmp_path):
    out = tmp_path / "sweep.json"
    on_ray = experiment.sweep(tiny_llama, prompts, "zero-implicit-bias", out=out, executor=cluster, **SWEEP)
    assert len(local_rows) == 1 + 8 * 4  # the baseline's loss + 4 metrics for each of the 8 heads
    assert on_ray.rows == local_rows  # every value and bootstrap interval, bit for bit, in the same order
    assert Results.load(out).rows == local_rows
    assert on_ray.provenance["executor"] == {"kind": "ray", "address": cluster.address, "workers": 2,
                                             "cpus_per_worker": 1, "gpus_per_worker": 0.0}
    # several interventions, one of them with a prepared first pass (its statistics are sent to the workers)
    items = ["mask-sink", "mean-implicit-bias", "scale-sink:gamma=0.5,layers=1"]
    here = experiment.run(tiny_llama, prompts, items, progress=False, rows_per_forward=6)
    there = experiment.run(tiny_llama, prompts, items, progress=False, rows_per_forward=6, executor=cluster)
    assert there.rows == here.rows and len(here) == 1 + 3 * 4


class GatedPrompts(data.Dataset):
    """Prompts whose batches, on a Ray worker, wait for a gate file after leaving a mark (`gate.PID`): the
    test knows that worker is mid-job when it kills it."""

    def __init__(self, plain: data.Dataset, gate: Path, driver: int, die: bool = False):
        super().__init__(**{f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)})
        self.gate, self.driver, self.die = gate, driver, die

    def model_inputs(self, index, tokens):
        if os.getpid() != self.driver:
            Path(f"{self.gate}.{os.getpid()}").touch()
            if self.die:
                os.kill(os.getpid(), signal.SIGKILL)
            while not self.gate.exists():
                time.sleep(0.01)
        return tokens


@pytest.fixture(scope="module")
def by_value():
    """This module's classes and functions travel to the workers by value (they cannot import tests/)."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_worker_killed_mid_job_is_replaced_and_its_job_retried(cluster, tiny_llama, prompts, local_rows,
                                                                 tmp_path):
    gate, out = tmp_path / "gate", tmp_path / "sweep.json"
    gated = GatedPrompts(prompts, gate, os.getpid())
    pids = set(cluster.worker_pids())
    done: dict = {}

    def sweep():
        try:
            done["results"] = experiment.sweep(tiny_llama, gated, "zero-implicit-bias", out=out, executor=cluster,
                                               **SWEEP)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            done["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    deadline = time.monotonic() + 120
    while not (marks := list(tmp_path.glob("gate.*"))) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marks, "no worker started a job within 120 s"
    victim = int(marks[0].suffix[1:])
    assert victim in pids
    os.kill(victim, signal.SIGKILL)  # mid-job: it is waiting inside the job's first batch
    gate.touch()
    thread.join(timeout=300)
    assert "error" not in done, done.get("error")
    assert done["results"].rows == local_rows  # identical rows: none lost, none twice
    assert Results.load(out).rows == local_rows and not (tmp_path / "sweep.json.partial.jsonl").exists()
    assert cluster.retried and all(job.startswith("job ") and "zero-implicit-bias@L" in job for job in cluster.retried)
    assert victim not in cluster.worker_pids() and len(cluster.worker_pids()) == 2  # replaced


def test_a_job_whose_worker_always_dies_fails_naming_it(cluster, tiny_llama, prompts, tmp_path):
    deadly = GatedPrompts(prompts, tmp_path / "gate", os.getpid(), die=True)
    cluster.max_retries = 0
    try:
        with pytest.raises(ExecutorError, match=r"job 1 of sweep:zero-implicit-bias:head on tiny-llama \(units "
                                                r"zero-implicit-bias@L0H0\) failed 1 time\(s\): its Ray worker died"):
            experiment.sweep(tiny_llama, deadly, "zero-implicit-bias", layers=0, heads=0, executor=cluster, **SWEEP)
    finally:
        cluster.max_retries = 2
    assert len(cluster.worker_pids()) == 2  # the dead worker was replaced for the next run


def test_a_driver_killed_mid_sweep_resumes_from_its_journal(cluster, ray_head, tiny_llama, prompts, local_rows,
                                                             tmp_path):
    out = tmp_path / "sweep.json"
    code = textwrap.dedent(f"""
        import os, signal
        from workbench import experiment, zoo
        from workbench.core import data, results
        model = zoo.load("tiny-llama")
        ds = data.control_prompts(model, "random", window=24, n=6, seed=0)
        real = results.ResultStore.add
        def add(self, unit, rows):
            real(self, unit, rows)
            if self.n_done == 3:
                os.kill(os.getpid(), signal.SIGKILL)  # the driver dies with jobs still on the workers
        results.ResultStore.add = add
        experiment.sweep(model, ds, "zero-implicit-bias", out={str(out)!r}, over="head", batch_size=6,
                         rows_per_forward=6, progress=False, executor={{"address": {ray_head.address!r}, "workers": 1}})
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SINKBENCH_PROGRESS": "0"}
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    journal = [json.loads(line)["unit"] for line in (tmp_path / "sweep.json.partial.jsonl").read_text().splitlines()[1:]]
    assert journal == ["zero-implicit-bias@L0H0", "zero-implicit-bias@L0H1", "zero-implicit-bias@L0H2"]
    resumed = experiment.sweep(tiny_llama, prompts, "zero-implicit-bias", out=out, executor=cluster, **SWEEP)
    assert resumed.provenance["resumed_units"] == 3
    assert resumed.rows == local_rows and Results.load(out).rows == local_rows  # nothing lost, nothing twice


def stub_compute(ctx):
    rows = [{"metric": "first_token_attention", "layer": layer, "head": head, "value": 0.1 * layer + 0.05 * head}
            for layer in range(2) for head in range(2)]
    rows.append({"metric": "sink_ratio", "eps": 0.3, "layer": None, "head": None, "value": 0.5})
    return Results(rows, {"model": ctx.model_name, "data_source": "stub", "window": 8, "n_sequences": 2,
                          "bos_policy": "bos", "computed_by": os.getpid()})


def test_figures_compute_their_recipes_on_the_workers_and_draw_here(cluster, tmp_path, monkeypatch):
    gallery.recipes()
    monkeypatch.setattr(registry, "REGISTRY", {})
    for name in ("stub-a", "stub-b"):
        entry = registry.recipe(name, title=f"Stub {name}", reproduces="Nobody 2025")(stub_compute)
        entry.plotter(lambda results, ctx: plots.sink_grid(results))
    done = gallery.build(None, tmp_path, model="tiny-llama", all_=True, log=lambda _: None, executor=cluster)
    assert [d["name"] for d in done] == ["stub-a", "stub-b"] and all((tmp_path / d["png"]).is_file() for d in done)
    computed_by = {Results.load(tmp_path / d["data"]).provenance["computed_by"] for d in done}
    assert computed_by <= set(cluster.worker_pids()) and os.getpid() not in computed_by
    again = gallery.build(None, tmp_path, model="tiny-llama", all_=True, log=lambda _: None, executor=cluster)
    assert [d["name"] for d in again] == ["stub-a", "stub-b"]  # cached: nothing sent to the workers


def test_bad_cluster_options_fail_fast_and_clearly(ray_head, tiny_llama, prompts):
    for workers in (0, -2, 1.5):
        with pytest.raises(InputError, match="workers must be a whole number of Ray workers, at least 1"):
            RayExecutor(address=ray_head.address, workers=workers)
    with pytest.raises(InputError, match=r"executor\.workers must be .* at least 1; got 0"):
        experiment.sweep(tiny_llama, prompts, "zero-implicit-bias", executor={"kind": "ray", "workers": 0}, **SWEEP)
    with pytest.raises(InputError, match="unknown executor 'dask'"):
        check_options("dask")
    with pytest.raises(InputError, match=r"spec <dict>: executor: unknown option 'worker'"):
        RunSpec.from_dict({"model": "tiny-llama", "executor": {"kind": "ray", "worker": 2}})
    started = time.monotonic()
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(ExecutorError, match=rf"no Ray cluster answers at {closed}"):
        RayExecutor(address=closed, workers=1).start()
    assert time.monotonic() - started < 10
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"gpus_per_worker=1, but the Ray cluster .* has no GPUs"), \
            RayExecutor(address=ray_head.address, workers=1, gpus_per_worker=1) as gpu:
        gpu.start()
    assert time.monotonic() - started < 10


def test_without_ray_executor_ray_is_one_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds where the extra is not installed
    with pytest.raises(ExecutorError, match=r"needs Ray, which is not installed here: pip install "
                                            r"'sink-workbench\[distributed\]'"):
        RayExecutor(workers=2)
    assert "executor: ray at auto, 4 worker(s) x 2 CPU(s)" in RunSpec.from_dict(
        {"model": "tiny-llama", "run": {"interventions": ["mask-sink"]},
         "executor": {"address": "auto", "workers": 4, "cpus_per_worker": 2}}).explain()
