"""What every plot reads from Results: the model and text to name in the title, and the rows it needs."""

from __future__ import annotations

import pandas as pd

from workbench.core.results import Results


def model_of(results: Results) -> str:
    return str(results.provenance.get("model", ""))


def text_of(results: Results) -> str:
    """The text a run read, for a title: corpus, window, number of sequences, BOS policy."""
    prov = results.provenance
    source = str(prov.get("data_source", "")).replace("corpus:", "").replace("control:", "")
    window = prov.get("window")
    bos = prov.get("bos_policy")
    parts = [source] + ([f"T={window}"] if window else []) + ([f"n={prov['n_sequences']}"] if prov.get("n_sequences") else [])
    if bos == "none":
        parts.append("no BOS")
    return ", ".join(p for p in parts if p)


def require(frame: pd.DataFrame, metric: str, what: str) -> pd.DataFrame:
    """The rows of `metric`; a KeyError naming the plot and the metrics there are if none."""
    found = frame[frame.metric == metric]
    if found.empty:
        raise KeyError(f"{what} needs rows with metric {metric!r}; the Results have {sorted(set(frame.metric))}")
    return found


def sink_metric(frame: pd.DataFrame) -> str:
    """The sinks probe's per-head score: attention to token 0, or to the chosen sink positions."""
    return "first_token_attention" if "first_token_attention" in set(frame.metric) else "sink_attention"
