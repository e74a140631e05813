"""Tidy results with provenance: what every probe and experiment returns and every figure reads.

    >>> res = Results([{"metric": "loss", "value": 3.21}], provenance={"model": "smollm2-135m"})
    >>> res.save("out/loss.json"); Results.load("out/loss.json").value("loss")

Rows are flat dicts; the core columns come first (experiment, model, intervention, layer, head,
metric, value, n, ci_low, ci_high) and experiment-specific columns (eps, position, token, ...) follow.
A lookup that matches nothing (`filter`, `value`) raises, naming the values that do exist (a mistyped
label never yields an empty table); `filter(..., empty_ok=True)` is for lookups that may find nothing.
Undefined numbers (the interval of a single sequence) are NaN in memory and null in JSON.
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

from workbench.core.cache import atomic_path, atomic_write_text, make_parent, sha256_bytes
from workbench.core.errors import InputError

CORE_COLUMNS = ["experiment", "model", "intervention", "layer", "head", "metric", "value", "n", "ci_low", "ci_high"]
_PACKAGES = ("sink-workbench", "torch", "transformers", "transformer-lens", "numpy", "pandas", "matplotlib")


def _scalar(value: Any) -> Any:
    """numpy/torch numbers to Python; NaN and inf stay floats in memory (`_clean` makes them JSON-safe)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, RuntimeError):  # an array of several numbers: leave it (it prints, not JSON)
            pass
    return value


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy/torch numbers to Python, NaN to None, inf to "inf"."""
    value = _scalar(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


_STAT_COLUMNS = ("value", "ci_low", "ci_high")


def _restore(row: dict) -> dict:
    """A row read back from JSON: "inf"/"-inf" numbers and undefined (null) intervals are floats again."""
    out = dict(row)
    for key in _STAT_COLUMNS:
        if out.get(key) in ("inf", "-inf"):
            out[key] = float(out[key])
        elif key != "value" and key in out and out[key] is None:
            out[key] = math.nan
    return out


def _matches(row: dict, where: dict) -> bool:
    for key, want in where.items():
        have = row.get(key)
        if isinstance(want, (list, tuple, set, frozenset)):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def _shown(values: Iterable[Any], limit: int = 30) -> str:
    distinct = sorted({repr(v) for v in values}, key=lambda text: (len(text) > 40, text))
    more = f" ... ({len(distinct)} in all)" if len(distinct) > limit else ""
    return ", ".join(distinct[:limit]) + more


def _condition(where: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in where.items())


class Results:
    """A tidy table of rows plus the provenance of how they were made."""

    def __init__(self, rows: Iterable[dict] | pd.DataFrame = (), provenance: dict | None = None):
        if isinstance(rows, pd.DataFrame):
            rows = rows.to_dict("records")
        if isinstance(rows, (str, bytes, dict)) or not hasattr(rows, "__iter__"):
            raise InputError(f"Results rows must be a list of dicts (or a DataFrame), got {type(rows).__name__}")
        rows = list(rows)
        bad = next((r for r in rows if not isinstance(r, dict)), None)
        if bad is not None:
            raise InputError(f"Results rows must be dicts, got {bad!r}")
        self._rows = [{k: _scalar(v) for k, v in row.items()} for row in rows]
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

    def filter(self, *, empty_ok: bool = False, **where: Any) -> Results:
        """Rows whose columns equal the given values (a list/tuple/set value means 'any of').

            >>> res.filter(metric="delta_loss", intervention=["mask-sink", "scale-sink(gamma=0.5)"])
            >>> res.filter(metric="logit_diff", empty_ok=True)        # may match nothing: no error

        A filter that matches nothing is an InputError naming the condition that emptied it and the values
        that exist there (a mistyped label would otherwise give an empty table, silently); `empty_ok=True`
        returns empty Results instead."""
        kept = [r for r in self._rows if _matches(r, where)]
        if not kept and not empty_ok:
            raise InputError(f"no row matches {_condition(where)}: {self._why_empty(where)}")
        return Results(kept, self.provenance)

    def _why_empty(self, where: dict) -> str:
        """Which condition of `where` empties the rows, and the values its column has where it applies."""
        if not self._rows:
            return "these Results hold no rows"
        rows, applied = self._rows, {}
        for key, want in where.items():
            narrowed = [r for r in rows if _matches(r, {key: want})]
            if not narrowed:
                if not any(key in r for r in self._rows):
                    columns = sorted({c for r in self._rows for c in r})
                    return f"no row has a column {key!r}; the columns are {', '.join(columns)}"
                among = f" among the rows with {_condition(applied)}" if applied else ""
                return f"{key}={want!r} matches none{among}; the {key} values there are {_shown(r.get(key) for r in rows)}"
            rows, applied = narrowed, {**applied, key: want}
        return "no row satisfies every condition at once"  # pragma: no cover - each narrowing was non-empty

    def value(self, metric: str, **where: Any) -> float:
        """The value of the single row matching metric and `where`; an error if there are 0 or several (it says
        which values exist, or in which columns the several rows differ)."""
        found = self.filter(metric=metric, empty_ok=True, **where).rows
        if not found:
            raise InputError(f"expected one row with metric={metric!r} {where}, found 0: "
                             f"{self._why_empty({'metric': metric, **where})}")
        if len(found) != 1:
            columns = sorted({c for r in found for c in r} - {"value", "ci_low", "ci_high", "n", "n_sequences"})
            differ = [c for c in columns if len({repr(r.get(c)) for r in found}) > 1]
            hint = "; they differ in " + "; ".join(f"{c} ({_shown(r.get(c) for r in found)})" for c in differ[:4]) \
                if differ else ""
            raise InputError(f"expected one row with metric={metric!r} {where}, found {len(found)}{hint}: "
                             "add those columns to the lookup")
        return found[0]["value"]

    def metrics(self) -> list[str]:
        return sorted({r.get("metric") for r in self._rows if r.get("metric") is not None})

    def __add__(self, other: Results) -> Results:
        return Results(self._rows + other.rows, {**self.provenance, **other.provenance})

    def __repr__(self) -> str:
        return f"Results({len(self)} rows, metrics={self.metrics()}, model={self.provenance.get('model')!r})"

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> str:
        rows = [{k: _clean(v) for k, v in row.items()} for row in self._rows]
        return json.dumps({"provenance": self.provenance, "rows": rows}, indent=1, default=str)

    def save(self, path: str | Path) -> Path:
        """Write atomically; the format follows the suffix: .json, .csv (provenance in a `# ` first line),
        .parquet (provenance in the file metadata; needs pyarrow)."""
        path = Path(path)
        check_output_path(path)
        if path.suffix == ".json":
            atomic_write_text(path, self.to_json())
        elif path.suffix == ".csv":
            header = "# provenance: " + json.dumps(self.provenance, default=str) + "\n"
            atomic_write_text(path, header + self.df.to_csv(index=False))
        else:
            frame = self.df
            frame.attrs["provenance"] = json.dumps(self.provenance, default=str)
            with atomic_path(path) as tmp:
                frame.to_parquet(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Read Results written by `save`; a truncated, corrupt or foreign file is one InputError."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"result file {path} does not exist")
        fix = "rerun the experiment that wrote it (a finished run writes its file atomically)"
        if path.suffix == ".json":
            try:
                blob = json.loads(path.read_bytes().decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"result file {path} is not UTF-8 JSON (byte {exc.start}); {fix}") from None
            except json.JSONDecodeError as exc:
                raise InputError(f"result file {path} is truncated or not valid JSON ({exc.msg} at line {exc.lineno}, "
                                 f"column {exc.colno}); {fix}") from None
            if not isinstance(blob, dict) or not isinstance(blob.get("rows"), list) or \
                    not all(isinstance(r, dict) for r in blob["rows"]):
                raise InputError(f"result file {path} holds no Results (expected {{'provenance': ..., 'rows': [...]}})")
            return cls([_restore(r) for r in blob["rows"]], blob.get("provenance"))
        if path.suffix == ".csv":
            try:
                with open(path, encoding="utf-8") as handle:
                    first = handle.readline()
                provenance = json.loads(first[len("# provenance: "):]) if first.startswith("# provenance: ") else {}
                frame = pd.read_csv(path, skiprows=1 if provenance else 0)
            except (UnicodeDecodeError, json.JSONDecodeError, pd.errors.ParserError,
                    pd.errors.EmptyDataError) as exc:
                raise InputError(f"result file {path} is truncated or not a Results CSV ({exc}); {fix}") from None
            return cls(frame.astype(object).where(frame.notna(), None), provenance)
        if path.suffix == ".parquet":
            _require_pyarrow()
            try:
                frame = pd.read_parquet(path)
                return cls(frame, json.loads(frame.attrs.get("provenance", "{}")))
            except (OSError, ValueError) as exc:
                raise InputError(f"result file {path} is truncated or not a Results parquet file ({exc}); {fix}") from None
        raise InputError(f"unknown result format {path.suffix!r} for {path}: use .json, .csv or .parquet")


FORMATS = (".json", ".csv", ".parquet")


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise InputError("reading or writing .parquet needs pyarrow (`pip install pyarrow`); use .json or .csv") from exc


def check_output_path(path: str | Path) -> Path:
    """Refuse an output path before any work is done: a known format (.json, .csv, .parquet), a directory
    that can be created and written to, and not a directory itself. Cheap: call it before the compute."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise InputError(f"unknown result format {path.suffix!r} for {path}: use .json, .csv or .parquet")
    if path.is_dir():
        raise InputError(f"the output path {path} is a directory; give a file name ending in .json, .csv or .parquet")
    if path.suffix == ".parquet":
        _require_pyarrow()
    make_parent(path)
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"the output {'file ' + str(path) if path.exists() else 'directory ' + str(path.parent)} "
                         "is not writable")
    return path


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
        check_output_path(self.path)  # before any compute: a bad output path fails first
        if self.journal.is_file() and resume:
            self._read_journal()
        else:
            self._write_header()

    def _write_header(self) -> None:
        atomic_write_text(self.journal, json.dumps({"identity_hash": self.key, "identity": self.identity},
                                                   default=str) + "\n")

    def _read_journal(self) -> None:
        with open(self.journal, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict):
            raise InputError(f"{self.journal} is not a readable journal (its header line is cut or corrupt); delete it "
                             "to start afresh")
        if header.get("identity_hash") != self.key:
            raise InputError(
                f"{self.journal} holds a partial run of a different experiment (identity {header.get('identity_hash')} "
                f"vs {self.key}); delete it or write to another output"
            )
        for line in lines[1:]:
            try:
                unit = json.loads(line)
                self._units[unit["unit"]] = [dict(r) for r in unit["rows"]]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break  # a line cut by a crash: everything before it is intact

    def done(self, unit: str) -> bool:
        return unit in self._units

    def rows(self, unit: str) -> list[dict]:
        return self._units[unit]

    @property
    def n_done(self) -> int:
        return len(self._units)

    def add(self, unit: str, rows: list[dict]) -> None:
        """Append one finished unit and fsync at once: a crash after this loses nothing of it."""
        rows = [{k: _scalar(v) for k, v in r.items()} for r in rows]  # NaN/inf kept exactly (JSON NaN/Infinity)
        with open(self.journal, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"unit": unit, "rows": rows}, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._units[unit] = rows

    def finish(self, provenance: dict, leading_rows: Iterable[dict] = ()) -> Results:
        """Write the final Results atomically (`leading_rows` first, e.g. a run's baseline, then every
        journaled unit in order) and remove the journal."""
        rows = [*leading_rows, *(row for rows in self._units.values() for row in rows)]
        results = Results(rows, {**provenance, "identity_hash": self.key})
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
    except (ValueError, KeyError, OSError):  # unreadable or foreign: recompute rather than trust it
        return None
    return results if results.provenance.get("identity_hash") == identity_hash(identity) else None
