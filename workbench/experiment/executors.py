"""Where the jobs of a run go: this process (`local`, the default) or the workers of a Ray cluster (`ray`).

    >>> experiment.sweep(model, data, "zero-implicit-bias", over="head", out="out/zib.json", executor="ray")
    >>> with RayExecutor(address="auto", workers=8, gpus_per_worker=1) as cluster:      # one pool, many runs
    ...     for name in ("smollm2-135m", "gemma3-270m"):
    ...         experiment.sweep(zoo.load(name), data, "zero-implicit-bias", executor=cluster)

The question this module answers: how does a sweep, a multi-intervention run or a figure build move from a
laptop to a cluster without changing one row? The runner and the gallery cut their work into pure jobs
(model name and weights checksum, data and its hash, stacks of intervention units, shard) -> the rows of
whole units, and an executor hands them out. `LocalExecutor` runs them one after another in this process on
the caller's model: exactly the passes of a run without an executor. `RayExecutor` hands them to actors
(Moritz et al. 2018, Ray); each actor loads its model once by name (`zoo.load`), checks the weights
checksum against the driver's, and keeps it, with the data and the baseline logits, for every job it gets.

Three contracts make a Ray run write the same file as a local one:
- a job's rows are whole units computed over all the data, so every value and bootstrap interval is
  computed in one place, from the same per-sequence statistics, by the same code;
- results come back in the jobs' order, whatever order the workers finish in;
- the driver is the only writer of the journal and of the Results file (atomic, resumable as before).
A worker that dies mid-job (killed, out of memory, node lost) is replaced and its job retried, at most
`max_retries` times; then one ExecutorError names the job. Errors a job raises on purpose (a NaN from an
intervention, a missing model) are raised as they are, without a retry.

Ray is an optional extra: `pip install 'sink-workbench[distributed]'`. Without it, `executor="ray"` is one
error naming the extra. The Ray options (`address`, `workers`, `cpus_per_worker`, `gpus_per_worker`) are the
same in the API, in TOML specs (`[executor]`) and on the command line (`--executor ray --workers 4 ...`);
docs/SCALE.md says how to start a cluster and what a full sweep costs on one.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from workbench.core.errors import InputError, WorkbenchError, check_number, check_range, is_integer
from workbench.core.modelinfo import info

EXTRA = "distributed"
KINDS = ("local", "ray")
OPTIONS = ("address", "workers", "cpus_per_worker", "gpus_per_worker", "max_retries")
_CONNECT_SECONDS = 5.0  # an address that does not answer a TCP connection in this time is unreachable
_JOBS_PER_WORKER = 2  # queued on each actor, so that it starts the next job while the driver reads the last
_ENV_FOR_WORKERS = ("SINKBENCH_CACHE", "HF_HOME")  # where a worker finds models (the workbench sets the rest)


class ExecutorError(WorkbenchError, RuntimeError):
    """The cluster could not run a job: Ray missing, an unreachable address, workers that cannot be placed,
    a job whose worker died more often than it may be retried."""


# --------------------------------------------------------------------------------------------------
# What a job refers to: a model by name and checksum, shared objects by key
# --------------------------------------------------------------------------------------------------


def model_checksum(model: Any) -> str:
    """The SHA-256 of a model's weights: the zoo's manifest checksum where there is one, else a digest of
    the parameters (names, shapes, dtypes, bytes), e.g. for tiny random models built from a seed.

        >>> model_checksum(zoo.load("smollm2-135m"))        # the manifest's weights_sha256
    """
    model_info = info(model)
    if model_info.weights_sha256:
        return model_info.weights_sha256
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return "params:" + digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A model as a job names it: the zoo name a worker loads, and the checksum the worker must find."""

    name: str
    checksum: str
    dtype: str = "float32"

    @classmethod
    def of(cls, model: Any) -> ModelRef:
        dtype = next((str(p.dtype).removeprefix("torch.") for p in model.parameters()), "float32")
        return cls(info(model).name, model_checksum(model), dtype)


@dataclasses.dataclass
class Shared:
    """An object every job of a run reads (the Dataset, the prepared statistics), sent once per run.

    `key` says what it is (a data hash); in this process `value` is the object itself, on Ray `box` holds
    its object reference (in a list, so that Ray does not fetch it again for every job)."""

    key: str
    value: Any = None
    box: list | None = None


class WorkerState:
    """What one worker keeps between jobs: its model (loaded once by name, checksum verified), the shared
    objects of the runs it serves, and what jobs keep for their successors (the baseline logits)."""

    def __init__(self, model: Any = None, device: str | None = None, tick: Callable[[], None] | None = None):
        self._local = model  # the local executor's state: the caller's model serves every job, as it is
        self._model: Any = None
        self._model_ref: ModelRef | None = None
        self.device = device
        self.tick = tick  # progress of one forward pass (the local executor shows a bar; workers none)
        self._shared: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._kept: collections.OrderedDict[Any, Any] = collections.OrderedDict()

    def model(self, ref: ModelRef) -> Any:
        """The model a job names: the caller's (local), the one this worker holds, or loaded now by name."""
        if self._local is not None:
            return self._local
        if self._model_ref is not None and (self._model_ref.name, self._model_ref.checksum, self._model_ref.dtype) \
                == (ref.name, ref.checksum, ref.dtype):
            return self._model
        import torch

        from workbench import zoo

        self._model, self._model_ref = None, None
        self._kept.clear()  # what was kept was computed with the previous model
        try:
            # fresh: this state is the model's only holder, so the next model a pool serves replaces it in memory
            model = zoo.load(ref.name, device=self.device, dtype=getattr(torch, ref.dtype), fresh=True)
        except WorkbenchError as exc:
            raise ExecutorError(f"a Ray worker on {socket.gethostname()} loads its model by name and could not load "
                                f"{ref.name!r}: {exc}. Give the run a model the zoo loads by that name on every node "
                                "(a zoo name fetched there or on a shared SINKBENCH_CACHE, toy:DIR or a directory on "
                                "a shared filesystem), or use executor 'local'") from None
        found = model_checksum(model)
        if found != ref.checksum:
            raise ExecutorError(f"the worker on {socket.gethostname()} loaded {ref.name} with weights {found[:20]}..., "
                                f"but the driver's model has {ref.checksum[:20]}...: the nodes' model caches "
                                "differ; put SINKBENCH_CACHE on a shared filesystem or fetch the same weights on "
                                "every node (`sinkbench models fetch`)")
        self._model, self._model_ref = model, ref
        return model

    def get(self, shared: Shared) -> Any:
        """A shared object, fetched from the object store once per worker."""
        if shared.box is None:
            return shared.value
        if shared.key not in self._shared:
            import ray

            self._shared[shared.key] = ray.get(shared.box[0])
            while len(self._shared) > 4:  # the runs of a pool come one after another: keep the last few
                self._shared.popitem(last=False)
        self._shared.move_to_end(shared.key)
        return self._shared[shared.key]

    def keep(self, key: Any, make: Callable[[], Any], limit: int = 2) -> Any:
        """What `make` builds, kept under `key` for the next jobs (at most `limit` such things)."""
        if key not in self._kept:
            self._kept[key] = make()
            while len(self._kept) > limit:
                self._kept.popitem(last=False)
        self._kept.move_to_end(key)
        return self._kept[key]


class Job(Protocol):
    """A pure job: everything it reads is in it (or in a Shared it names); it returns what it computed."""

    def describe(self) -> str: ...

    def run(self, state: WorkerState) -> Any: ...


# --------------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------------


class Executor:
    """Runs jobs and returns their results in the jobs' order; a context manager (`close` on exit)."""

    kind = "base"

    def share(self, key: str, value: Any) -> Shared:
        return Shared(key, value)

    def map(self, jobs: Iterable[Job], local: WorkerState | None = None) -> Iterator[Any]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind}

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LocalExecutor(Executor):
    """Each job in this process, one after another, on the caller's model: a run exactly as without one.

        >>> sweep(model, data, "mask-sink", executor="local")     # the default

    Jobs are taken one at a time, so a runner that sizes the next job from the last one's time can."""

    kind = "local"

    def map(self, jobs: Iterable[Job], local: WorkerState | None = None) -> Iterator[Any]:
        state = local or WorkerState()
        for job in jobs:
            yield job.run(state)


class _Worker:
    """A Ray actor: one process that keeps its WorkerState (model, data, baseline logits) between jobs."""

    def __init__(self, threads: int, device: str):
        import torch

        os.environ["SINKBENCH_PROGRESS"] = "0"
        torch.set_num_threads(threads)
        self.state = WorkerState(device=device)

    def ready(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname()}

    def run(self, job: Job) -> Any:
        return job.run(self.state)


def _require_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"executor 'ray' needs Ray, which is not installed here: pip install "
                            f"'sink-workbench[{EXTRA}]' (from a checkout: pip install -e '.[{EXTRA}]'), or use "
                            "executor 'local'") from None
    return ray


def _split_address(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() and 0 < int(port) < 65536 else None


def _auto_address() -> str | None:
    """What `address="auto"` means to Ray: $RAY_ADDRESS, else the cluster `ray start` last started here."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        return current.read_text().strip() or None
    except OSError:
        return None


def check_reachable(address: str, timeout: float = _CONNECT_SECONDS) -> None:
    """Raise ExecutorError unless something accepts a TCP connection at HOST:PORT within `timeout` seconds
    (Ray itself would retry for minutes)."""
    host, port = _split_address(address) or (None, None)
    if host is None:
        raise InputError(f"Ray address {address!r}: use auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ExecutorError(f"no Ray cluster answers at {address} ({exc.strerror or exc}, waited at most "
                            f"{timeout:.0f} s): start one there with `ray start --head --port {port}`, give the "
                            "address it prints, or omit the address to start a local Ray for this run") from None


class RayExecutor(Executor):
    """Jobs on `workers` Ray actors, each with `cpus_per_worker` CPUs (torch threads) and `gpus_per_worker` GPUs.

        >>> with RayExecutor(address="10.0.0.5:6379", workers=16, cpus_per_worker=4) as cluster:
        ...     sweep(model, data, "zero-implicit-bias", out="out/zib.json", executor=cluster)

    `address`: auto (the cluster `ray start` made on this machine, or $RAY_ADDRESS) or HOST:PORT of a head
    node; None starts a local Ray instance for this executor and stops it on `close`. `workers`: default as
    many as the cluster's CPUs (or GPUs) hold. Actors start on first use and are kept until `close`, so the
    runs given one executor share loaded models. A worker that dies is replaced and its job retried up to
    `max_retries` times."""

    kind = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_worker: int = 1,
                 gpus_per_worker: float = 0, max_retries: int = 2, start_seconds: float = 120.0):
        if address is not None and (not isinstance(address, str) or
                                    (address != "auto" and _split_address(address) is None)):
            raise InputError(f"Ray address {address!r}: use auto or HOST:PORT (e.g. 10.0.0.5:6379), or give none "
                             "to start a local Ray for this run")
        if workers is not None:
            if not is_integer(workers) or workers < 1:
                raise InputError(f"workers must be a whole number of Ray workers, at least 1; got {workers!r}")
            workers = int(workers)
        self.address = address
        self.workers = workers
        self.cpus_per_worker = check_range("cpus_per_worker", cpus_per_worker, 1, 1 << 12)
        self.gpus_per_worker = check_number("gpus_per_worker", gpus_per_worker, low=0.0, high=64.0)
        self.max_retries = check_range("max_retries", max_retries, 0, 100)
        self.start_seconds = check_number("start_seconds", start_seconds, low=1.0)
        self._ray = _require_ray()
        self._owns_ray = False
        self._actors: list[Any] = []
        self._connected_to: str | None = None
        self.retried: list[str] = []  # the jobs retried after their worker died (for reports and tests)

    # -- the cluster ------------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self._ray
        address = self.address
        if address == "auto":
            address = _auto_address()
            if address is None:
                raise ExecutorError("address auto: no Ray cluster was started on this machine (no $RAY_ADDRESS, no "
                                    "`ray start` record): start one with `ray start --head`, give HOST:PORT, or omit "
                                    "the address to start a local Ray for this run")
        if address is not None:
            check_reachable(address)  # within seconds: Ray itself would retry for minutes
        if ray.is_initialized():  # this process is already a driver (an earlier executor, or the caller's ray.init)
            current = ray.get_runtime_context().gcs_address
            if address is not None and _split_address(address) and _split_address(current) and \
                    _split_address(address)[1] != _split_address(current)[1]:
                raise ExecutorError(f"this process is already connected to the Ray cluster at {current}; one process "
                                    f"drives one cluster: close the other executor (or ray.shutdown()) to use {address}")
            self._connected_to = current
            return
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if address is None:
            cpus = (self.workers or os.cpu_count() or 1) * self.cpus_per_worker
            ray.init(num_cpus=cpus, **options)
            self._owns_ray = True
            self._connected_to = f"a local Ray instance started for this run ({cpus} CPUs)"
            return
        try:  # "auto" goes to Ray as it is: Ray then also applies its rules for a local cluster's auth token
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(f"could not connect to the Ray cluster at {address}: {exc}. If the cluster uses "
                                "token authentication, set RAY_AUTH_MODE=token and give this machine its token "
                                "(RAY_AUTH_TOKEN, or ~/.ray/auth_token); docs/SCALE.md") from None
        self._connected_to = address

    def _check_resources(self) -> int:
        """How many workers to start; an ExecutorError if even one cannot be placed, before anything waits."""
        ray = self._ray
        total = ray.cluster_resources()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        cpus, gpus = self.cpus_per_worker, self.gpus_per_worker
        have = f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs on {len(nodes)} node(s)"
        if gpus > 0 and total.get("GPU", 0) == 0:
            raise ExecutorError(f"gpus_per_worker={gpus:g}, but the Ray cluster ({self._connected_to}) has no GPUs "
                                f"({have}): set gpus_per_worker=0 (--gpus-per-worker 0) or add GPU nodes")
        if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            raise ExecutorError(f"no node of the Ray cluster has {cpus} CPUs and {gpus:g} GPUs for one worker ({have}); "
                                "ask for fewer CPUs/GPUs per worker")
        fits = int(total.get("CPU", 0) // cpus)
        if gpus > 0:
            fits = min(fits, int(total.get("GPU", 0) // gpus))
        workers = self.workers or max(1, fits)
        if workers > fits:
            raise ExecutorError(f"{workers} workers x {cpus} CPUs" + (f" x {gpus:g} GPUs" if gpus else "") +
                                f" do not fit in the Ray cluster ({have}); at most {fits} fit: start fewer workers "
                                "or add nodes")
        return workers

    def _spawn(self) -> Any:
        env = {name: os.environ[name] for name in _ENV_FOR_WORKERS if name in os.environ}
        actor = self._ray.remote(_Worker).options(
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=0,
            runtime_env={"env_vars": env} if env else None)
        return actor.remote(self.cpus_per_worker, "cuda" if self.gpus_per_worker > 0 else "cpu")

    def start(self) -> None:
        """Connect (or start a local Ray) and start the workers; done by the first `map`."""
        if self._actors:
            return
        self._connect()
        count = self._check_resources()
        self._actors = [self._spawn() for _ in range(count)]
        try:
            self._ray.get([a.ready.remote() for a in self._actors], timeout=self.start_seconds)
        except self._ray.exceptions.GetTimeoutError:
            self.close()
            raise ExecutorError(f"{count} Ray workers did not start within {self.start_seconds:.0f} s on "
                                f"{self._connected_to} (resources free now: {self._ray.available_resources()}): "
                                "other jobs hold the cluster, or the autoscaler is still adding nodes") from None

    def worker_pids(self) -> list[int]:
        """The process ids of the workers (their host's): what a test kills, or `ps` shows."""
        return [info["pid"] for info in self._ray.get([a.ready.remote() for a in self._actors])]

    def share(self, key: str, value: Any) -> Shared:
        self.start()
        return Shared(f"{key}:{uuid.uuid4().hex[:12]}", box=[self._ray.put(value)])

    def map(self, jobs: Iterable[Job], local: WorkerState | None = None) -> Iterator[Any]:
        """Every job on the workers, `_JOBS_PER_WORKER` queued on each; results in the jobs' order."""
        ray = self._ray
        self.start()
        died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                *(getattr(ray.exceptions, name) for name in ("ActorUnavailableError", "ObjectLostError")
                  if hasattr(ray.exceptions, name)))
        source = iter(jobs)
        pending: dict[Any, tuple[int, Job, int, Any]] = {}  # object ref -> (job number, job, worker slot, actor)
        load = [0] * len(self._actors)
        attempts: collections.Counter[int] = collections.Counter()
        finished: dict[int, Any] = {}
        numbered, emitted, exhausted = 0, 0, False

        def submit(number: int, job: Job) -> None:
            slot = min(range(len(self._actors)), key=lambda s: load[s])
            actor = self._actors[slot]
            pending[actor.run.remote(job)] = (number, job, slot, actor)
            load[slot] += 1

        try:
            while True:
                while not exhausted and min(load) < _JOBS_PER_WORKER:
                    job = next(source, None)
                    if job is None:
                        exhausted = True
                        break
                    submit(numbered, job)
                    numbered += 1
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                number, job, slot, actor = pending.pop(ready[0])
                load[slot] -= 1
                try:
                    finished[number] = ray.get(ready[0])
                except died as exc:
                    if self._actors[slot] is actor:  # the first of its jobs to report the death: replace it
                        self._actors[slot] = self._spawn()
                    attempts[number] += 1
                    if attempts[number] > self.max_retries:
                        raise ExecutorError(f"{job.describe()} failed {attempts[number]} time(s): its Ray worker "
                                            f"died each time (last: {type(exc).__name__}: {str(exc)[:300]}); look for "
                                            "out-of-memory kills on the node, or run it with executor 'local' to see "
                                            "it fail in this process") from None
                    self.retried.append(job.describe())
                    submit(number, job)
                except ray.exceptions.RayTaskError as exc:  # the job raised: the same error as in this process
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, WorkbenchError):
                        raise cause from None
                    raise ExecutorError(f"{job.describe()} failed on its Ray worker: {exc}") from None
                while emitted in finished:
                    yield finished.pop(emitted)
                    emitted += 1
        finally:
            for ref in pending:  # a driver that stops early (an error, Ctrl-C) leaves no queued work behind
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - already finished or its worker gone: nothing to cancel
                    pass

    def describe(self) -> dict:
        return {"kind": self.kind, "address": self.address, "workers": len(self._actors) or self.workers,
                "cpus_per_worker": self.cpus_per_worker, "gpus_per_worker": self.gpus_per_worker}

    def close(self) -> None:
        """Stop the workers, and the local Ray instance if this executor started it."""
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone is what we want
                pass
        self._actors = []
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False


# --------------------------------------------------------------------------------------------------
# Choosing one: names, options (API, TOML, CLI) -> an executor
# --------------------------------------------------------------------------------------------------


def check_options(spec: Any, where: str = "executor") -> dict:
    """An executor given as a name ("local", "ray") or a table ({"kind": "ray", "workers": 4, ...}) ->
    {"kind": ..., options}; InputError naming the key otherwise. Imports no Ray (specs are checked first)."""
    if spec is None:
        return {"kind": "local"}
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected 'local', 'ray' or a table of Ray options, got {spec!r}")
    blob = dict(spec)
    kind = blob.pop("kind", "ray" if blob else "local")
    if kind not in KINDS:
        raise InputError(f"{where}: unknown executor {kind!r}; use {' or '.join(KINDS)}")
    unknown = [k for k in blob if k not in OPTIONS]
    if unknown:
        raise InputError(f"{where}: unknown option {unknown[0]!r}; Ray takes {', '.join(OPTIONS)}")
    if kind == "local" and blob:
        raise InputError(f"{where}: options {', '.join(blob)} are for executor 'ray', not 'local'")
    if "address" in blob and blob["address"] is not None:
        address = blob["address"]
        if not isinstance(address, str) or (address != "auto" and _split_address(address) is None):
            raise InputError(f"{where}.address = {address!r}: use auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    if blob.get("workers") is not None:
        workers = blob["workers"]
        if not is_integer(workers) or workers < 1:
            raise InputError(f"{where}.workers must be a whole number of Ray workers, at least 1; got {workers!r}")
    if "cpus_per_worker" in blob:
        check_range(f"{where}.cpus_per_worker", blob["cpus_per_worker"], 1, 1 << 12)
    if "gpus_per_worker" in blob:
        check_number(f"{where}.gpus_per_worker", blob["gpus_per_worker"], low=0.0, high=64.0)
    if "max_retries" in blob:
        check_range(f"{where}.max_retries", blob["max_retries"], 0, 100)
    return {"kind": kind, **blob}


def make(spec: Any) -> Executor:
    """An Executor from a name or a table of options (see check_options); an Executor is returned as it is."""
    if isinstance(spec, Executor):
        return spec
    options = check_options(spec)
    kind = options.pop("kind")
    return LocalExecutor() if kind == "local" else RayExecutor(**options)


class using:
    """`with using(executor) as ex:` an Executor made from a name or options is closed on exit (a local Ray it
    started is stopped); an Executor object the caller made stays open for the caller's next runs."""

    def __init__(self, spec: Any):
        self.executor = make(spec)
        self._owned = not isinstance(spec, Executor)

    def __enter__(self) -> Executor:
        return self.executor

    def __exit__(self, *exc: Any) -> None:
        if self._owned:
            self.executor.close()


def describe(spec: Any) -> str:
    """One line for `--explain`: where the jobs will run."""
    options = spec.describe() if isinstance(spec, Executor) else check_options(spec)
    if options["kind"] == "local":
        return "executor: local (this process)"
    address = options.get("address") or "a local Ray instance started for the run"
    workers = options.get("workers") or "as many as fit"
    gpus = options.get("gpus_per_worker", 0)
    return (f"executor: ray at {address}, {workers} worker(s) x {options.get('cpus_per_worker', 1)} CPU(s)"
            + (f" x {gpus:g} GPU(s)" if gpus else "") + "; each worker loads the model once, the driver writes the "
            "journal and the file")

