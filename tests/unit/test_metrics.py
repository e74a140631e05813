import math

import numpy as np
import pytest
import torch

from workbench.core import metrics


def test_token_nll_is_cross_entropy_of_the_next_token():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11)
    tokens = torch.randint(0, 11, (3, 6))
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1))
    assert metrics.token_nll(logits, tokens).mean().item() == pytest.approx(expected.item(), rel=1e-6)


def test_kl_and_top1_of_identical_and_shifted_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    assert metrics.kl_per_token(logits, logits).abs().max() < 1e-6
    assert metrics.top1_agreement(logits, logits).mean() == 1.0
    assert metrics.kl_per_token(logits, logits + 3.0).abs().max() < 1e-5  # softmax is shift-invariant
    flipped = -logits
    assert metrics.kl_per_token(logits, flipped).min() > 0
    p = torch.softmax(logits[0, 0], -1)
    q = torch.softmax(flipped[0, 0], -1)
    assert metrics.kl_per_token(logits, flipped)[0, 0].item() == pytest.approx((p * (p / q).log()).sum().item(), rel=1e-5)


def test_sequence_stats_pool_tokens_and_bootstrap_over_sequences():
    values = torch.tensor([[1.0, 1.0, 1.0], [4.0, 4.0, 4.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    stats = metrics.SequenceStats.from_tokens(values[:2]) + metrics.SequenceStats.from_tokens(values[2:])
    assert stats.mean() == pytest.approx(values.mean().item())
    assert stats.n == 12 and len(stats) == 4
    low, high = stats.bootstrap_ci(seed=0)
    assert low < stats.mean() < high and 1.0 <= low and high <= 4.0
    assert stats.bootstrap_ci(seed=0) == stats.bootstrap_ci(seed=0)
    assert all(math.isnan(x) for x in metrics.SequenceStats.from_tokens(values[:1]).bootstrap_ci())


def test_paired_difference_and_row():
    base = metrics.SequenceStats.from_tokens(torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    new = metrics.SequenceStats.from_tokens(torch.tensor([[1.5, 1.5], [2.0, 3.0]]))
    delta = new.paired_minus(base)
    assert delta.mean() == pytest.approx(new.mean() - base.mean())
    row = base.row("perplexity", transform=math.exp, model="m")
    assert row["value"] == pytest.approx(math.exp(1.5)) and row["model"] == "m" and row["n_sequences"] == 2


def test_embedding_cosine_and_logit_diff():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert np.allclose(metrics.embedding_cosine(a, a * 3).numpy(), 1.0)
    assert metrics.embedding_cosine(a[:1], a[1:]).item() == pytest.approx(0.0)
    logits = torch.zeros(1, 3, 4)
    logits[0, -1, 2] = 5.0
    assert metrics.logit_diff(logits, (2, 0)).item() == 5.0


def test_reference_compare_equals_the_separate_metrics():
    torch.manual_seed(0)
    base, tokens = torch.randn(3, 7, 50) * 3, torch.randint(0, 50, (3, 7))
    new = base + torch.randn(3, 7, 50)
    nll, kl, agree = metrics.Reference.of(base).compare(new, tokens)
    assert torch.allclose(nll, metrics.token_nll(new, tokens), atol=1e-6)
    assert torch.allclose(kl, metrics.kl_per_token(base, new), atol=1e-5)  # sum p log p - sum p log q: ~1e-6
    assert torch.equal(agree, metrics.top1_agreement(base, new))
    assert metrics.Reference.of(base).compare(base, tokens)[1].max() < 1e-5  # KL of the baseline to itself
    assert torch.equal(agree, (new.argmax(-1) == base.argmax(-1)).float())  # no ties: the plain argmax test


def test_top1_agreement_counts_a_tie_for_the_top_as_agreement():
    base = torch.tensor([[[0.0, 3.0, 1.0], [2.0, 0.0, 1.0], [0.0, 1.0, 5.0]]])  # top tokens 1, 0, 2
    new = torch.tensor([[[3.0, 3.0, 0.0], [0.0, 2.0, 1.0], [4.0, 1.0, 4.0]]])  # 0 ties 1; 1 wins; 0 ties 2
    assert metrics.top1_agreement(base, new).tolist() == [[1.0, 0.0, 1.0]]
    _, _, agree = metrics.Reference.of(base).compare(new, torch.zeros(1, 3, dtype=torch.long))
    assert agree.tolist() == [[1.0, 0.0, 1.0]]


def test_spearman_needs_no_scipy_and_handles_ties_and_missing_values():
    assert metrics.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)  # scipy's value
    assert metrics.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 1e9]) == pytest.approx(1.0)  # ranks, not values
    assert metrics.spearman([1, 2, None, 3, float("nan")], [3, 2, 1, 1, 0]) == pytest.approx(-1.0)
    assert np.array_equal(metrics.rank([3.0, 1.0, 2.0, 2.0]), [3.0, 0.0, 1.5, 1.5])
    from workbench.core.errors import InputError

    with pytest.raises(InputError, match="at least 3 pairs"):
        metrics.spearman([1, 2], [2, 1])
    with pytest.raises(InputError, match="constant"):
        metrics.spearman([1, 1, 1], [1, 2, 3])
    with pytest.raises(InputError, match="of one length"):
        metrics.spearman([1, 2, 3], [1, 2])
