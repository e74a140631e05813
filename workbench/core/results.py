"""Tidy results with provenance: what every probe and experiment returns and every figure reads.

    >>> res = Results([{"metric": "loss", "value": 3.21}], provenance={"model": "smollm2-135m"})
    >>> res.save("out/loss.json"); Results.load("out/loss.json").value("loss")

Rows are flat dicts; the core columns come first (experiment, model, intervention, layer, head,
metric, value, n, ci_low, ci_high) and experiment-specific columns (eps, position, token, ...) follow.
The provenance header carries package versions, the model checksum, the data hash, the BOS policy,
the seed, the git commit and the wall time. Every write is atomic, and a `ResultStore` journals the
units of a sweep as they finish so that a sweep killed half-way resumes without recomputing them.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.cache import atomic_write_text, sha256_bytes
from workbench.core.errors import InputError

CORE_COLUMNS = ["experiment", "model", "intervention", "layer", "head", "metric", "value", "n", "ci_low", "ci_high"]
_PACKAGES = ("sink-workbench", "torch", "transformers", "transformer-lens", "numpy", "pandas", "matplotlib")


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy/torch numbers to Python, NaN to None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class Results:
    """A tidy table of rows plus the provenance of how they were made."""

    def __init__(self, rows: Iterable[dict] | pd.DataFrame = (), provenance: dict | None = None):
        if isinstance(rows, pd.DataFrame):
            rows = rows.to_dict("records")
        self._rows = [{k: _clean(v) for k, v in row.items()} for row in rows]
        self.provenance = dict(provenance or {})

    # -- access --------------------------------------------------------------------------------
    @property
    def rows(self) -> list[dict]:
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self._rows)

    @property
    def df(self) -> pd.DataFrame:
        frame = pd.DataFrame(self._rows)
        core = [c for c in CORE_COLUMNS if c in frame.columns]
        return frame[core + [c for c in frame.columns if c not in core]]

    def filter(self, **where: Any) -> Results:
        """Rows whose columns equal the given values (a list/tuple/set value means 'any of')."""
        def keep(row: dict) -> bool:
            for key, want in where.items():
                have = row.get(key)
                if isinstance(want, (list, tuple, set)):
                    if have not in want:
                        return False
                elif have != want:
                    return False
            return True

        return Results([r for r in self._rows if keep(r)], self.provenance)

    def value(self, metric: str, **where: Any) -> float:
        """The value of the single row matching metric and `where`; an error if there are 0 or several."""
        found = self.filter(metric=metric, **where).rows
        if len(found) != 1:
            raise InputError(f"expected one row with metric={metric!r} {where}, found {len(found)}")
        return found[0]["value"]

    def metrics(self) -> list[str]:
        return sorted({r.get("metric") for r in self._rows if r.get("metric") is not None})

    def __add__(self, other: Results) -> Results:
        return Results(self._rows + other.rows, {**self.provenance, **other.provenance})

    def __repr__(self) -> str:
        return f"Results({len(self)} rows, metrics={self.metrics()}, model={self.provenance.get('model')!r})"

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"provenance": self.provenance, "rows": self._rows}, indent=1, default=str)

    def save(self, path: str | Path) -> Path:
        """Write atomically; the format follows the suffix: .json, .csv (provenance in a `# ` first line),
        .parquet (provenance in the file metadata; needs pyarrow)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output directory {path.parent}: {exc.strerror}") from exc
        if not os.access(path.parent, os.W_OK):
            raise InputError(f"the output directory {path.parent} is not writable")
        if path.suffix == ".json":
            atomic_write_text(path, self.to_json())
        elif path.suffix == ".csv":
            header = "# provenance: " + json.dumps(self.provenance, default=str) + "\n"
            atomic_write_text(path, header + self.df.to_csv(index=False))
        elif path.suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:
                raise InputError("saving .parquet needs pyarrow (`pip install pyarrow`); use .json or .csv") from exc
            frame = self.df
            frame.attrs["provenance"] = json.dumps(self.provenance, default=str)
            tmp = path.with_name(f".{path.name}.tmp")
            frame.to_parquet(tmp)
            os.replace(tmp, path)
        else:
            raise InputError(f"unknown result format {path.suffix!r} for {path}: use .json, .csv or .parquet")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Results:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"result file {path} does not exist")
        if path.suffix == ".json":
            blob = json.loads(path.read_text())
            return cls(blob["rows"], blob.get("provenance"))
        if path.suffix == ".csv":
            with open(path) as handle:
                first = handle.readline()
            provenance = json.loads(first[len("# provenance: "):]) if first.startswith("# provenance: ") else {}
            frame = pd.read_csv(path, skiprows=1 if provenance else 0)
            return cls(frame.astype(object).where(frame.notna(), None), provenance)
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            return cls(frame, json.loads(frame.attrs.get("provenance", "{}")))
        raise InputError(f"unknown result format {path.suffix!r} for {path}")


# --------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for dist in _PACKAGES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_commit() -> dict[str, Any]:
    """The commit of the workbench checkout this code runs from (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return {"git_commit": None, "git_dirty": None}
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None, "git_dirty": None}


def provenance(experiment: str, model: Any = None, data: Any = None, seed: int | None = None,
               **extra: Any) -> dict:
    """The provenance header of a result: what ran, on what, with which code."""
    from workbench.core.modelinfo import info

    header: dict[str, Any] = {
        "experiment": experiment,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
        **git_commit(),
    }
    if model is not None:
        header.update(info(model).provenance())
    if data is not None:
        header.update(data.provenance())
    header.update(extra)
    return header


def identity_hash(identity: dict) -> str:
    """A stable hash of what determines a run (model, data hash, spec): equal hash, reusable results."""
    return sha256_bytes(json.dumps(identity, sort_keys=True, default=str).encode())[:16]


# --------------------------------------------------------------------------------------------------
# Resumable sweeps
# --------------------------------------------------------------------------------------------------


class ResultStore:
    """A journal of finished units next to the final result file.

        >>> store = ResultStore("out/sweep.json", identity={"model": ..., "spec": ...})
        >>> for layer in range(30):
        ...     if not store.done(f"layer={layer}"):
        ...         store.add(f"layer={layer}", compute(layer))        # appended and fsynced at once
        >>> results = store.finish(provenance)                          # atomic final write, journal removed

    A sweep killed half-way leaves `out/sweep.json.partial.jsonl`; the same call resumes from it. A
    journal written by a different run (other identity) is refused rather than mixed in.
    """

    def __init__(self, path: str | Path, identity: dict, resume: bool = True):
        self.path = Path(path)
        self.identity = identity
        self.key = identity_hash(identity)
        self.journal = self.path.with_name(self.path.name + ".partial.jsonl")
        self._units: dict[str, list[dict]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output directory {self.path.parent}: {exc.strerror}") from exc
        if self.journal.is_file() and resume:
            self._read_journal()
        else:
            self._write_header()

    def _write_header(self) -> None:
        atomic_write_text(self.journal, json.dumps({"identity_hash": self.key, "identity": self.identity},
                                                   default=str) + "\n")

    def _read_journal(self) -> None:
        with open(self.journal) as handle:
            lines = handle.read().splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("identity_hash") != self.key:
            raise InputError(
                f"{self.journal} holds a partial run of a different experiment (identity {header.get('identity_hash')} "
                f"vs {self.key}); delete it or write to another output"
            )
        for line in lines[1:]:
            try:
                unit = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a crash: everything before it is intact
            self._units[unit["unit"]] = unit["rows"]

    def done(self, unit: str) -> bool:
        return unit in self._units

    def rows(self, unit: str) -> list[dict]:
        return self._units[unit]

    @property
    def n_done(self) -> int:
        return len(self._units)

    def add(self, unit: str, rows: list[dict]) -> None:
        rows = [{k: _clean(v) for k, v in r.items()} for r in rows]
        with open(self.journal, "a") as handle:
            handle.write(json.dumps({"unit": unit, "rows": rows}, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._units[unit] = rows

    def finish(self, provenance: dict) -> Results:
        results = Results([row for rows in self._units.values() for row in rows],
                          {**provenance, "identity_hash": self.key})
        results.save(self.path)
        self.journal.unlink(missing_ok=True)
        return results


def cached(path: str | Path, identity: dict) -> Results | None:
    """The saved Results at `path` if they were made by a run with this identity, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        results = Results.load(path)
    except (ValueError, KeyError):
        return None
    return results if results.provenance.get("identity_hash") == identity_hash(identity) else None
