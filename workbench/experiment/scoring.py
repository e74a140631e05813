"""How an intervened forward pass is scored against the baseline: one scorer per model family.

    >>> scorer = scorer_for(zoo.info(model))           # CausalLMScorer, EncoderScorer or ClassifierScorer
    >>> scorer.check(metrics=None, logit_pair=None)     # the default metrics of that family

- causal LMs: `loss`, `delta_loss`, `kl`, `top1_agreement` and, with a token pair, `logit_diff`
  (+ `delta_logit_diff`); `perplexity` on request;
- encoders: `embedding_cosine` (mean-pooled final residual stream vs the baseline's) and `embedding_change`
  (||e' - e|| / ||e||), because a checkpoint without a trained LM head (MiniLM) has logits that mean nothing;
- image classifiers: `accuracy`, `delta_accuracy`, `logit_change` (the change of the true class's logit), `kl`
  and `top1_agreement` of the class distribution.
Every value is a `SequenceStats` (per-sequence sums), so the runner gets bootstrap intervals over sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from workbench.core import sites
from workbench.core.errors import InputError
from workbench.core.metrics import (
    Reference,
    SequenceStats,
    embedding_cosine,
    kl_per_token,
    logit_diff,
    mean_pooled,
    token_nll,
    top1_agreement,
)
from workbench.passes import Hook, forward

CAUSAL_METRICS = ("loss", "perplexity", "delta_loss", "kl", "top1_agreement", "logit_diff")
ENCODER_METRICS = ("embedding_cosine", "embedding_change")
CLASSIFIER_METRICS = ("accuracy", "delta_accuracy", "logit_change", "kl", "top1_agreement")
KNOWN = set(CAUSAL_METRICS) | set(ENCODER_METRICS) | set(CLASSIFIER_METRICS)


class Scorer:
    """The metrics of one model family: which exist, what the model's output is, how it is compared."""

    family: ClassVar[str] = ""
    defaults: ClassVar[tuple[str, ...]] = ()
    allowed: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model_info: Any) -> None:
        self.info = model_info

    def check(self, metrics: Sequence[str] | None, logit_pair: Any) -> tuple[str, ...]:
        """The metrics to compute; refuse the ones that mean nothing for this model."""
        if metrics is None:
            return self.defaults
        unknown = [m for m in metrics if m not in KNOWN]
        if unknown:
            raise InputError(f"unknown metric {unknown[0]!r}: use {', '.join(sorted(KNOWN))}")
        meaningless = [m for m in metrics if m not in self.allowed]
        if meaningless:
            raise InputError(self.refusal(meaningless[0]))
        return tuple(metrics)

    def refusal(self, metric: str) -> str:
        raise NotImplementedError

    def outputs(self, model: Any, inputs: torch.Tensor, hooks: Sequence[Hook]) -> torch.Tensor:
        """What is compared: logits [b, T, V] / [b, classes], or the final residual stream [b, T, d]."""
        return forward(model, inputs, hooks)

    def reference(self, base: torch.Tensor) -> Reference | None:
        """What the scorer keeps of a baseline batch to compare every intervened pass against."""
        return None

    def baseline(self, out: torch.Tensor, tokens: torch.Tensor, pair: Any,
                 labels: torch.Tensor | None) -> dict[str, SequenceStats]:
        return {}

    def unit(self, out: torch.Tensor, base: torch.Tensor, tokens: torch.Tensor, pair: Any,
             base_stats: dict[str, SequenceStats], labels: torch.Tensor | None,
             reference: Reference | None) -> dict[str, SequenceStats]:
        raise NotImplementedError


class CausalLMScorer(Scorer):
    family = "causal-lm"
    defaults = ("loss", "delta_loss", "kl", "top1_agreement")
    allowed = CAUSAL_METRICS

    def check(self, metrics: Sequence[str] | None, logit_pair: Any) -> tuple[str, ...]:
        chosen = super().check(metrics, logit_pair)
        if metrics is None and logit_pair is not None:
            chosen = (*chosen, "logit_diff")
        if "logit_diff" in chosen and logit_pair is None:
            raise InputError("metric logit_diff needs a token pair (logit_pair=(a, b) / --logit-pair A B)")
        return chosen

    def refusal(self, metric: str) -> str:
        if metric in CLASSIFIER_METRICS:
            return f"metric {metric!r} is for image classifiers; {self.info.name} is a causal LM"
        return f"metric {metric!r} means nothing on {self.info.name}, a causal LM: use {', '.join(CAUSAL_METRICS)}"

    def reference(self, base: torch.Tensor) -> Reference:
        return Reference.of(base)

    def baseline(self, out, tokens, pair, labels):
        stats = {"loss": SequenceStats.from_tokens(token_nll(out, tokens))}
        if pair is not None:
            stats["logit_diff"] = SequenceStats.from_sequences(logit_diff(out, pair))
        return stats

    def unit(self, out, base, tokens, pair, base_stats, labels, reference):
        nll, kl, agree = reference.compare(out, tokens)
        loss = SequenceStats.from_tokens(nll)
        stats = {"loss": loss, "delta_loss": loss.paired_minus(base_stats["loss"]),
                 "kl": SequenceStats.from_tokens(kl), "top1_agreement": SequenceStats.from_tokens(agree)}
        if pair is not None:
            diff = SequenceStats.from_sequences(logit_diff(out, pair))
            stats["logit_diff"] = diff
            stats["delta_logit_diff"] = diff.paired_minus(base_stats["logit_diff"])
        return stats


class EncoderScorer(Scorer):
    family = "encoder"
    defaults = ENCODER_METRICS
    allowed = ENCODER_METRICS

    def refusal(self, metric: str) -> str:
        what = "an image encoder without a classifier head" if self.info.is_image else \
            "an encoder whose MLM head is not trained (random)"
        return (f"metric {metric!r} means nothing on {self.info.name}: {what}; use embedding_cosine or "
                "embedding_change")

    def outputs(self, model, inputs, hooks):
        final = {}

        def grab(tensor: torch.Tensor, hook: Any) -> None:
            final["resid"] = tensor

        forward(model, inputs, [*hooks, (sites.resid(self.info.n_layers - 1), grab)])
        return final["resid"]

    def unit(self, out, base, tokens, pair, base_stats, labels, reference):
        pooled, pooled_base = mean_pooled(out), mean_pooled(base)
        change = (pooled - pooled_base).norm(dim=-1) / pooled_base.norm(dim=-1)
        return {"embedding_cosine": SequenceStats.from_sequences(embedding_cosine(pooled_base, pooled)),
                "embedding_change": SequenceStats.from_sequences(change)}


class ClassifierScorer(Scorer):
    family = "image-classifier"
    defaults = CLASSIFIER_METRICS
    allowed = CLASSIFIER_METRICS

    def refusal(self, metric: str) -> str:
        return (f"metric {metric!r} means nothing on {self.info.name}, an image classifier: "
                f"use {', '.join(CLASSIFIER_METRICS)}")

    def baseline(self, out, tokens, pair, labels):
        if labels is None:
            return {}
        return {"accuracy": SequenceStats.from_sequences((out.argmax(-1) == labels.to(out.device)).float())}

    def unit(self, out, base, tokens, pair, base_stats, labels, reference):
        """Per image: KL and top-1 agreement with the baseline's class distribution, the change of the logit of
        the true class (of the baseline's prediction when there are no labels), accuracy and its change."""
        target = (labels.to(out.device) if labels is not None else base.argmax(-1))[:, None]
        change = (out.float().gather(-1, target) - base.float().gather(-1, target)).squeeze(-1)
        stats = {"kl": SequenceStats.from_sequences(kl_per_token(base, out)),
                 "top1_agreement": SequenceStats.from_sequences(top1_agreement(base, out)),
                 "logit_change": SequenceStats.from_sequences(change)}
        if labels is not None:
            correct = SequenceStats.from_sequences((out.argmax(-1) == target[:, 0]).float())
            stats["accuracy"] = correct
            stats["delta_accuracy"] = correct.paired_minus(base_stats["accuracy"])
        return stats


SCORERS: dict[str, type[Scorer]] = {cls.family: cls for cls in (CausalLMScorer, EncoderScorer, ClassifierScorer)}


def scorer_for(model_info: Any) -> Scorer:
    """The scorer of a model's family (an image encoder without a head is scored like a text encoder)."""
    return SCORERS.get(model_info.family, EncoderScorer)(model_info)
