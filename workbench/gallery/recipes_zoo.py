"""Recipes across the zoo's causal language models: what stands at position 0 decides the sink.

Every causal model is probed on the same corpus windows with different tokens in front of the text: none
(the text's own first token is at position 0), the tokenizer's BOS, its EOS, its chat-start token and a
newline. Qwen2.5's tokenizer adds no BOS and its `bos_token` is `<|endoftext|>`: with that token first the
model grows almost no first-token sink (the measurement behind its "no BOS" default policy).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from workbench.core.results import Results
from workbench.gallery.identity import model_weights
from workbench.gallery.registry import FigureContext, recipe

CAUSAL = ("smollm2-135m", "gemma3-270m", "qwen2.5-0.5b")
PARAMS = {"window": 64, "n": 16, "models": list(CAUSAL), "eps": 0.3}
QUICK = {"window": 16, "n": 2}
CHAT_START = "<|im_start|>"


def _weights(ctx: FigureContext) -> dict[str, str | None]:
    return {name: model_weights(name) for name in ctx.params["models"]}


def candidates(model_info) -> list[tuple[str, int | None]]:
    """(label, token id) of what to put at position 0: the text's own token (None), then BOS, EOS, the chat-start
    token and a newline, each once (a token that is two of these is listed under its first name)."""
    tokenizer = model_info.tokenizer
    found: list[tuple[str, int | None]] = [("text's own", None)]
    chat = tokenizer.convert_tokens_to_ids(CHAT_START) if CHAT_START in tokenizer.get_vocab() else None
    newline = tokenizer.encode("\n", add_special_tokens=False)
    for role, token_id in (("BOS", model_info.bos_token_id), ("EOS", model_info.eos_token_id),
                           ("chat start", chat), ("newline", newline[0] if len(newline) == 1 else None)):
        if token_id is not None and token_id not in [t for _, t in found]:
            found.append((f"{tokenizer.decode([int(token_id)])!r} ({role})", int(token_id)))
    return found


def _measure(model, windows, first: int | None, eps: float, seed: int) -> tuple[list[dict], dict]:
    """Sink ratio at position 0 and the loss on the text's targets after its first token (the same targets in
    every condition, so the losses compare)."""
    import torch

    from workbench import probes
    from workbench.core.metrics import SequenceStats, token_nll

    if first is None:
        sequences, offset = list(windows.sequences), 0
    else:
        sequences = [np.concatenate([[first], s]).astype(np.int64) for s in windows.sequences]
        offset = 1
    dataset = dataclasses.replace(windows, sequences=sequences, bos_policy="as-given",
                                  window=len(sequences[0]), bos_by_default=False)
    sinks = probes.sinks(model, dataset, eps=(eps,), progress=False)
    ratio = sinks.filter(metric="sink_ratio", layer=None, eps=eps).rows[0]
    stats = SequenceStats.empty()
    with torch.no_grad():
        for start in range(0, len(sequences), 8):
            tokens = torch.as_tensor(np.stack(sequences[start:start + 8]))
            nll = token_nll(model(tokens), tokens)[:, offset:]  # predictions of text tokens 1..T-1
            stats = stats + SequenceStats.from_tokens(nll)
    return [{"metric": "sink_ratio", "value": ratio["value"], "n": ratio.get("n"), "ci_low": ratio.get("ci_low"),
             "ci_high": ratio.get("ci_high"), "eps": eps}, stats.row("loss", seed=seed)], sinks.provenance


@recipe("position-zero", title="What stands at position 0 decides the sink",
        reproduces="Gu et al. 2025 (arXiv 2410.10781), §5 and Table 4: the first token, not its content, "
                   "holds the sink; Qwen2.5 with <|endoftext|> first grows none (our measurement)",
        params=PARAMS, quick_params=QUICK, weights=_weights)
def position_zero(ctx: FigureContext) -> Results:
    from workbench.core import data

    rows, runs = [], {}
    for name in ctx.params["models"]:
        model = ctx.model(name)
        windows = data.corpus_windows(model, ctx.params.get("corpus", "austen"), ctx.params["window"],
                                      ctx.params["n"], prepend_bos=False)
        for label, token_id in candidates(model.sinkbench):
            measured, provenance = _measure(model, windows, token_id, ctx.params["eps"], ctx.seed)
            rows += [{**row, "model": name, "first": label, "first_id": token_id} for row in measured]
            runs[name] = provenance
    first = runs[ctx.params["models"][0]]
    return Results(rows, {**first, "models": list(ctx.params["models"]), "runs": runs, "bos_policy": "varied",
                          "window": ctx.params["window"], "n_sequences": ctx.params["n"],
                          "eps": ctx.params["eps"]})


@position_zero.plotter
def _(results: Results, ctx: FigureContext):
    from workbench import plots

    return plots.position_zero(results)


@position_zero.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    parts = []
    for name in results.provenance["models"]:
        rows = frame[frame.model == name]
        ratio = rows[rows.metric == "sink_ratio"].set_index("first").value
        loss = rows[rows.metric == "loss"].set_index("first").value
        low, high = ratio.idxmin(), ratio.idxmax()
        parts.append(f"{name}: sink ratio {ratio.min():.2f} with {low} first (loss {loss[low]:.2f}) to "
                     f"{ratio.max():.2f} with {high} (loss {loss[high]:.2f})")
    return ("Sink ratio (share of heads whose mean attention to position 0 is above eps = "
            f"{results.provenance.get('eps', 0.3)}) and the loss on the same text targets, against the token placed "
            f"at position 0 ({results.provenance['window']}-token windows of austen, "
            f"{results.provenance['n_sequences']} per model). " + "; ".join(parts) + ".")
