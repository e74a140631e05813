"""Metrics of a forward pass, kept per sequence so that confidence intervals resample sequences.

    >>> nll = token_nll(logits, tokens)                     # [batch, T-1], natural log
    >>> acc = SequenceStats.from_tokens(nll)                 # per-sequence sums and counts
    >>> acc.mean(), acc.bootstrap_ci(seed=0)

Definitions (each the mean over every counted token of every sequence, i.e. what HF's
`labels=input_ids` loss computes for `loss`):
- loss: next-token cross-entropy -log p(x_{t+1} | x_<=t), t = 0..T-2; perplexity = exp(loss);
- delta_loss: intervened loss - baseline loss on the same tokens;
- kl: KL(P_baseline || P_intervened) of the next-token distributions, per position, in nats;
- top1_agreement: fraction of positions where the baseline's top token (its argmax) is still a top token of the
  intervened distribution (a tie for the top counts as agreement);
- logit_diff: logit[a] - logit[b] at the last position (a token pair given by the user);
- embedding_cosine (encoders): cosine similarity of the mean-pooled final residual stream to the
  baseline's (what sentence-embedding models such as all-MiniLM-L6-v2 are for).
Rank statistics (`rank`, `spearman`) need only numpy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from workbench.core.errors import InputError

CAUSAL_METRICS = ("loss", "perplexity", "delta_loss", "kl", "top1_agreement", "logit_diff")
ENCODER_METRICS = ("embedding_cosine", "embedding_delta_norm")


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether no entry is NaN or +-inf. A sum holding a NaN or an inf is not finite, so a finite sum proves every
    entry finite (one read, ~25x faster than isfinite().all() on a [8, 9, 128, 128] pattern); only a sum that is
    not finite (or that overflowed) takes the entrywise check."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def token_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token negative log-likelihood, [batch, T-1], computed in float32."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logprobs.gather(-1, tokens[:, 1:, None].to(logprobs.device)).squeeze(-1)


def kl_per_token(base_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(P_base || P) per position, [batch, T], in nats."""
    base = torch.log_softmax(base_logits.float(), dim=-1)
    new = torch.log_softmax(logits.float(), dim=-1)
    return (base.exp() * (base - new)).sum(-1).clamp_min(0.0)


@dataclasses.dataclass
class Reference:
    """The baseline's next-token distributions, computed once per batch and reused by every intervention
    evaluated on it (a sweep scores hundreds of units against the same baseline)."""

    probs: torch.Tensor  # [batch, T, V] float32
    neg_entropy: torch.Tensor  # [batch, T]: sum_v p log p
    argmax: torch.Tensor  # [batch, T]

    @classmethod
    def of(cls, base_logits: torch.Tensor) -> Reference:
        logprobs = torch.log_softmax(base_logits.float(), dim=-1)
        probs = logprobs.exp()
        return cls(probs, torch.linalg.vecdot(probs, logprobs), base_logits.argmax(-1))

    def compare(self, logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token NLL [batch, T-1], KL(P_base || P) [batch, T], top-1 agreement [batch, T]) of intervened
        logits with one log-softmax: the same numbers as `token_nll`, `kl_per_token` and `top1_agreement`
        (KL as sum p log p - sum p log q; float32 rounding ~1e-6 nats, see tests/unit/test_metrics.py)."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        nll = -logprobs[:, :-1].gather(-1, tokens[:, 1:, None].to(logprobs.device)).squeeze(-1)
        kl = (self.neg_entropy - torch.linalg.vecdot(self.probs, logprobs)).clamp_min(0.0)  # (a matmul: 40x the
        # float32 error at V = 49k); the top-1 test as gather >= amax: ~3x faster than argmax on the CPU
        return nll, kl, _still_top(logprobs, self.argmax)


def _still_top(logits: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """1.0 where token `top` [batch, T] has the largest value of `logits` [batch, T, V] (ties count), else 0.0."""
    return (logits.gather(-1, top[..., None].to(logits.device)).squeeze(-1) >= logits.amax(-1)).float()


def top1_agreement(base_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """1.0 where the baseline's argmax token is still a top token of `logits` (a tie counts), [batch, T]."""
    return _still_top(logits, base_logits.argmax(-1))


def logit_diff(logits: torch.Tensor, pair: tuple[int, int]) -> torch.Tensor:
    """logit[a] - logit[b] at the last position, [batch]."""
    last = logits[:, -1].float()
    return last[:, pair[0]] - last[:, pair[1]]


def mean_pooled(resid: torch.Tensor) -> torch.Tensor:
    """Mean over positions of the final residual stream, [batch, d_model] (sentence-transformers pooling
    with an all-ones attention mask)."""
    return resid.float().mean(dim=1)


def embedding_cosine(base: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(base.float(), new.float(), dim=-1)


@dataclasses.dataclass
class SequenceStats:
    """Per-sequence sums and counts of a token-level quantity; the metric is sum(sums) / sum(counts)."""

    sums: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls) -> SequenceStats:
        return cls(np.zeros(0), np.zeros(0))

    @classmethod
    def from_tokens(cls, values: torch.Tensor) -> SequenceStats:
        """From a [batch, positions] tensor: one sequence per row."""
        values = values.detach().double().cpu()
        return cls(values.sum(-1).numpy(), np.full(values.shape[0], values.shape[-1], dtype=float))

    @classmethod
    def from_sequences(cls, values: torch.Tensor) -> SequenceStats:
        """From a [batch] tensor: one value per sequence."""
        values = values.detach().double().cpu().reshape(-1)
        return cls(values.numpy(), np.ones(values.shape[0]))

    def __add__(self, other: SequenceStats) -> SequenceStats:
        return SequenceStats(np.concatenate([self.sums, other.sums]), np.concatenate([self.counts, other.counts]))

    def __len__(self) -> int:
        return len(self.sums)

    def mean(self) -> float:
        return float(self.sums.sum() / self.counts.sum())

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def bootstrap_ci(self, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
        """Percentile bootstrap over sequences (resampled with replacement) of the pooled mean."""
        if len(self) < 2:
            return (math.nan, math.nan)
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self), size=(n_boot, len(self)))
        boots = self.sums[picks].sum(1) / self.counts[picks].sum(1)
        return float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2))

    def paired_minus(self, other: SequenceStats) -> SequenceStats:
        """Per-sequence difference of two pooled means over the same sequences (for delta_loss)."""
        return SequenceStats(self.sums - other.sums * (self.counts / other.counts), self.counts)

    def row(self, metric: str, seed: int = 0, transform=None, **extra) -> dict:
        """A tidy result row: value, n (tokens or sequences counted) and a 95 % bootstrap interval."""
        value = self.mean()
        low, high = self.bootstrap_ci(seed=seed)
        if transform is not None:
            value, low, high = transform(value), transform(low), transform(high)
        return {"metric": metric, "value": value, "n": self.n, "n_sequences": len(self), "ci_low": low,
                "ci_high": high, **extra}


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties given their average rank (what scipy.stats.rankdata gives, minus 1)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation of two equally long sequences, with average ranks for ties; pairs where
    either value is NaN or None are left out. Needs only numpy (pandas' method="spearman" needs SciPy).

        >>> spearman(frame.sink_score, frame.delta_loss)            # per-head comparison of two metrics
    """
    x = np.asarray([np.nan if v is None else v for v in a], dtype=np.float64)
    y = np.asarray([np.nan if v is None else v for v in b], dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"spearman needs two 1-D sequences of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        raise InputError(f"spearman needs at least 3 pairs of finite values, found {int(keep.sum())}")
    rank_x, rank_y = rank(x[keep]), rank(y[keep])
    if rank_x.std() == 0 or rank_y.std() == 0:
        raise InputError("spearman is undefined when one side is constant (every value ties)")
    return float(np.corrcoef(rank_x, rank_y)[0, 1])
