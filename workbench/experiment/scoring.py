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

Long sequences (issue 14): logits [b, T, V] in float32 are 1.6 GB per sequence for SmolLM2 at T = 8192, and
the baseline's distributions as much again. Where one sequence's logits would pass `LOGIT_CHUNK_BYTES`, a
causal LM's output is its final residual stream (`ln_final.hook_out`, [b, T, d_model]: the forward stops
there) and loss, KL and top-1 agreement are computed over query chunks of `_CHUNK_BYTES` of logits at a time,
each chunk through the model's own unembedding, with the formulas of `Reference.compare` (the numbers equal
the full path's within float32 rounding; tests/unit/test_blockwise_probes.py).
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
LOGIT_CHUNK_BYTES = 256 << 20  # float32 logits of one sequence above which a causal LM is scored in chunks
# float32 logits one chunk holds (each distribution it needs at once is this size): above glibc's largest mmap
# threshold (32 MB), so every chunk buffer is its own mapping, returned when freed (smaller buffers between
# small live tensors fragment the heap: measured +32 MB of RSS per chunk at T = 8192)
_CHUNK_BYTES = 48 << 20
FINAL_HOOK = "ln_final.hook_out"  # the final residual stream, normalised: what the unembedding reads
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


class _Stop(Exception):  # noqa: N818 (not an error: how the forward stops at the final residual stream)
    pass


class _ChunkedReference:
    """The baseline of a long batch, kept as its final residual stream [b, T, d]: every comparison recomputes
    the baseline's distributions chunk by chunk (a distribution [b, T, V] is never held whole)."""

    def __init__(self, scorer: CausalLMScorer, base: torch.Tensor) -> None:
        self.scorer, self.base = scorer, base

    def compare(self, out: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token NLL [b, T-1], KL(P_base || P) [b, T], top-1 agreement [b, T]): Reference.compare per chunk."""
        batch, length = out.shape[:2]
        nll = out.new_zeros(batch, length - 1, dtype=torch.float32)  # written in place: no small tensors between
        kl, agree = out.new_zeros(batch, length, dtype=torch.float32), out.new_zeros(batch, length, dtype=torch.float32)
        with torch.no_grad():
            for rows, (base_logits, new_logits) in self.scorer.chunks(self.base, out):
                reference = Reference.of(base_logits)  # the baseline's distributions of this chunk only
                logprobs = torch.log_softmax(new_logits.float(), dim=-1)
                targets = tokens[:, rows.start + 1:rows.stop + 1]  # the last position predicts nothing
                nll[:, rows.start:rows.start + targets.shape[1]] = -logprobs[:, :targets.shape[1]].gather(
                    -1, targets[..., None].to(logprobs.device)).squeeze(-1)
                kl[:, rows] = (reference.neg_entropy - torch.linalg.vecdot(reference.probs, logprobs)).clamp_min(0.0)
                agree[:, rows] = (new_logits.argmax(-1) == reference.argmax).float()
                del reference, logprobs, base_logits, new_logits
        return nll, kl, agree


class CausalLMScorer(Scorer):
    family = "causal-lm"
    defaults = ("loss", "delta_loss", "kl", "top1_agreement")
    allowed = CAUSAL_METRICS
    _model: Any = None

    def long(self, n_tokens: int) -> bool:
        """Whether a sequence of `n_tokens` is scored in chunks (its float32 logits over LOGIT_CHUNK_BYTES)."""
        return n_tokens * self.info.vocab_size * 4 > LOGIT_CHUNK_BYTES

    def outputs(self, model: Any, inputs: torch.Tensor, hooks: Sequence[Hook]) -> torch.Tensor:
        """Logits [b, T, V]; for a long sequence on a model with a final norm hook, its final residual stream
        [b, T, d] (the forward stops there; the unembedding runs per chunk)."""
        if not (self.long(inputs.shape[1]) and FINAL_HOOK in getattr(model, "hook_dict", {})):
            return forward(model, inputs, hooks)
        self._model = model
        found: dict[str, torch.Tensor] = {}

        def stop(tensor: torch.Tensor, hook: Any) -> None:
            found["resid"] = tensor
            raise _Stop

        try:
            forward(model, inputs, [*hooks, (FINAL_HOOK, stop)])
        except _Stop:
            pass
        return found["resid"]

    def chunked(self, out: torch.Tensor, tokens: torch.Tensor) -> bool:
        """Whether `out` is a final residual stream (a long sequence) rather than logits."""
        return self._model is not None and self.long(tokens.shape[1]) and out.shape[-1] != self.info.vocab_size

    @torch.no_grad()  # scoring builds no graph: one would keep every chunk's logits alive
    def logits(self, resid: torch.Tensor) -> torch.Tensor:
        """The model's own unembedding of final-residual rows (Gemma's final soft-capping where it is set)."""
        hf = getattr(self._model, "original_model", None)  # HF's own head: the bridge component keeps state
        logits = hf.get_output_embeddings()(resid) if hf is not None else self._model.unembed(resid)
        config = getattr(getattr(self._model, "original_model", None), "config", None)
        cap = getattr(getattr(config, "get_text_config", lambda: config)(), "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def chunks(self, *residuals: torch.Tensor):
        """(rows, logits) per query chunk of the residual streams [b, T, d] (one logits tensor per stream, or
        the tensor itself for one): chunks of `_CHUNK_BYTES` of float32 logits."""
        batch, length = residuals[0].shape[:2]
        size = max(1, _CHUNK_BYTES // (batch * self.info.vocab_size * 4))
        for start in range(0, length, size):
            rows = slice(start, min(start + size, length))
            logits = [self.logits(r[:, rows]) for r in residuals]
            yield rows, (logits[0] if len(logits) == 1 else logits)

    def token_nll(self, out: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token NLL [b, T-1] of logits or, for a long sequence, of its final residual stream in chunks."""
        if not self.chunked(out, tokens):
            return token_nll(out, tokens)
        nll = out.new_zeros(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.float32)
        with torch.no_grad():
            for rows, logits in self.chunks(out):
                targets = tokens[:, rows.start + 1:rows.stop + 1]  # the last position predicts nothing
                logprobs = torch.log_softmax(logits[:, :targets.shape[1]].float(), dim=-1)
                nll[:, rows.start:rows.start + targets.shape[1]] = -logprobs.gather(
                    -1, targets[..., None].to(logprobs.device)).squeeze(-1)
                del logits, logprobs
        return nll

    def last_logits(self, out: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(out[:, -1:]) if self.chunked(out, tokens) else out

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

    def reference(self, base: torch.Tensor) -> Reference | _ChunkedReference:
        if self._model is not None and base.shape[-1] != self.info.vocab_size and self.long(base.shape[1]):
            return _ChunkedReference(self, base)
        return Reference.of(base)

    def baseline(self, out, tokens, pair, labels):
        stats = {"loss": SequenceStats.from_tokens(self.token_nll(out, tokens))}
        if pair is not None:
            stats["logit_diff"] = SequenceStats.from_sequences(logit_diff(self.last_logits(out, tokens), pair))
        return stats

    def unit(self, out, base, tokens, pair, base_stats, labels, reference):
        nll, kl, agree = reference.compare(out, tokens)
        loss = SequenceStats.from_tokens(nll)
        stats = {"loss": loss, "delta_loss": loss.paired_minus(base_stats["loss"]),
                 "kl": SequenceStats.from_tokens(kl), "top1_agreement": SequenceStats.from_tokens(agree)}
        if pair is not None:
            diff = SequenceStats.from_sequences(logit_diff(self.last_logits(out, tokens), pair))
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
    if getattr(model_info, "is_multimodal", False):
        raise InputError(f"{model_info.name} is a multimodal LM: the runner scores text or image models, not mixed "
                         "image + text sets; measure the visual-sink edits with "
                         "interventions.multimodal.answer_accuracy(model, multimodal.mixed_set(model), [...]) and "
                         "the attention with probes.mixed_attention")
    return SCORERS.get(model_info.family, EncoderScorer)(model_info)
