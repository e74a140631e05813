"""workbench.streaming on the tiny random Llama (2 layers, GQA 4/2 heads, RoPE, context 256)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from workbench import cli, streaming
from workbench.core.errors import InputError
from workbench.core.metrics import token_nll
from workbench.core.results import Results
from workbench.streaming import CachePolicy, Dense, Recompute, Sinks, Window, stream_nll

# The fast (chunked, banded) path computes the same function as the exact token-by-token cache; only
# the order of float32 sums differs. Measured: <= 1e-6 nats here, ~1e-5 on SmolLM2 (see bench/ and the report).
FAST_VS_EXACT_ATOL = 1e-4


@pytest.fixture(scope="module")
def ids():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(7, 263, (120,), generator=generator)
    tokens[0] = 1  # BOS
    return tokens


@pytest.fixture(scope="module")
def full_forward_nll(tiny_llama, ids):
    with torch.no_grad():
        return token_nll(tiny_llama(ids[None]), ids[None])[0].numpy()


@dataclasses.dataclass(frozen=True)
class KeepTopAttended(CachePolicy):
    """A user policy in a few lines: keep the most-attended keys (summed attention, H2O-style) + the newest."""

    window: int = 24
    name = "top-attended"

    def keep(self, view):
        top = view.attention_sum[:-1].topk(self.window - 2).indices
        return torch.cat([top, torch.tensor([view.n - 1])])


# -- correct first ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [False, True])
def test_dense_equals_one_full_forward_pass(tiny_llama, ids, full_forward_nll, fast):
    stream = stream_nll(tiny_llama, ids, Dense(), fast=fast, chunk=32, progress=False)
    assert stream.nll.shape == (len(ids) - 1,)
    np.testing.assert_allclose(stream.nll, full_forward_nll, atol=1e-4, rtol=0)


@pytest.mark.parametrize("policy", [Window(120), Window(200), Sinks(4, 150)])
@pytest.mark.parametrize("fast", [False, True])
def test_a_cache_at_least_as_long_as_the_text_equals_dense(tiny_llama, ids, full_forward_nll, policy, fast):
    stream = stream_nll(tiny_llama, ids, policy, fast=fast, chunk=32, progress=False)
    np.testing.assert_allclose(stream.nll, full_forward_nll, atol=1e-4, rtol=0)


@pytest.mark.parametrize("policy", [Sinks(2, 16), Window(16), Sinks(4, 24, "newline"), Sinks(1, 2), Window(1),
                                    KeepTopAttended(24)])
def test_the_cache_never_holds_more_than_w_entries_and_does_not_grow_with_n(tiny_llama, ids, policy):
    short = stream_nll(tiny_llama, ids[:60], policy, fast=False, progress=False)
    long = stream_nll(tiny_llama, ids, policy, fast=False, progress=False)
    assert long.max_cache_entries == short.max_cache_entries == policy.window
    assert long.max_keys == policy.window
    assert long.cache_bytes == short.cache_bytes  # memory is fixed by W, not by N
    if policy.band() is not None:
        fast = stream_nll(tiny_llama, ids, policy, fast=True, chunk=16, progress=False)
        assert fast.max_keys == policy.window
        assert fast.max_cache_entries == policy.window - 1  # carried between chunks: S + (W - S - 1)


def test_recompute_forgets_a_token_after_w_steps_while_a_cache_remembers_it_through_later_keys(tiny_llama, ids):
    changed = ids.clone()
    changed[5] = 100
    before = stream_nll(tiny_llama, ids, Recompute(16), fast=False, progress=False).nll
    after = stream_nll(tiny_llama, changed, Recompute(16), fast=False, progress=False).nll
    assert np.abs(before[5 + 16:] - after[5 + 16:]).max() == 0.0  # out of every re-encoded window
    cached = stream_nll(tiny_llama, ids, Window(16), fast=False, progress=False).nll
    cached_changed = stream_nll(tiny_llama, changed, Window(16), fast=False, progress=False).nll
    assert np.abs(cached[5 + 16:] - cached_changed[5 + 16:]).max() > 1e-4  # keys computed while it was visible


def test_sinks_zero_is_window_attention(tiny_llama, ids):
    a = stream_nll(tiny_llama, ids, Sinks(0, 16), fast=False, progress=False).nll
    b = stream_nll(tiny_llama, ids, Window(16), fast=False, progress=False).nll
    np.testing.assert_array_equal(a, b)


def test_evicting_the_first_tokens_changes_predictions_and_sinks_keep_them(tiny_llama, ids):
    window = stream_nll(tiny_llama, ids, Window(16), fast=False, progress=False).nll
    sinks = stream_nll(tiny_llama, ids, Sinks(4, 16), fast=False, progress=False).nll
    np.testing.assert_allclose(window[:15], sinks[:15], atol=1e-6)  # nothing evicted yet: identical
    assert np.abs(window[16:] - sinks[16:]).max() > 1e-3


# -- fast path vs exact path ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [Sinks(2, 16), Window(16), Sinks(4, 24, "newline"), Sinks(1, 2), Window(1), Dense()])
def test_fast_path_matches_the_exact_path(tiny_llama, ids, policy):
    exact = stream_nll(tiny_llama, ids, policy, fast=False, progress=False)
    scored = np.isfinite(exact.nll)
    for chunk in (1, 7, 32, 256):  # chunks shorter, longer than W and than the text, and not dividing it
        fast = stream_nll(tiny_llama, ids, policy, fast=True, chunk=chunk, progress=False)
        assert (exact.path, fast.path) == ("exact", "fast")
        np.testing.assert_array_equal(np.isnan(exact.nll), np.isnan(fast.nll))
        assert np.abs(exact.nll[scored] - fast.nll[scored]).max() <= FAST_VS_EXACT_ATOL, chunk


def test_stream_policies_reads_the_common_prefix_once_without_changing_any_number(tiny_llama, ids):
    policies = [Window(16), Sinks(2, 16), Sinks(4, 40), Sinks(4, 40, "newline"), Dense()]
    results = streaming.stream_policies(tiny_llama, ids, policies, chunk=16, progress=False)
    assert results.provenance["shared_prefix_tokens"] == 40  # tokens 0..39: no policy evicts before
    for policy in policies:
        alone = stream_nll(tiny_llama, ids, policy, fast=False, progress=False)
        curve = results.filter(metric="nll", **policy.columns()).df.sort_values("position")["value"].to_numpy()
        np.testing.assert_allclose(curve, alone.nll[np.isfinite(alone.nll)], atol=FAST_VS_EXACT_ATOL, rtol=0)
        row = results.filter(metric="perplexity", **policy.columns()).rows[0]
        assert row["keys_per_query_max"] == (policy.window or len(ids) - 1)


def test_replacement_sinks_read_newlines_and_score_only_the_text(tiny_llama, ids):
    stream = stream_nll(tiny_llama, ids, Sinks(4, 24, "newline"), fast=False, progress=False)
    assert np.isnan(stream.nll[:3]).all() and np.isfinite(stream.nll[3:]).all()  # targets 1..3 were newlines
    plain = stream_nll(tiny_llama, ids, Sinks(4, 24), fast=False, progress=False)
    assert np.abs(stream.nll[3:] - plain.nll[3:]).max() > 1e-3


# -- recompute --------------------------------------------------------------------------------------


def test_recompute_stride_one_is_the_definition(tiny_llama, ids):
    """Every prediction re-encodes [first S] + [last W - S tokens] from scratch."""
    window, sinks = 16, 2
    stream = stream_nll(tiny_llama, ids, Recompute(window, sinks), fast=False, progress=False)
    assert stream.stride == 1
    naive = []
    with torch.no_grad():
        for q in range(len(ids) - 1):
            context = ids[:q + 1] if q < window else torch.cat([ids[:sinks], ids[q - (window - sinks) + 1:q + 1]])
            tokens = torch.cat([context, ids[q + 1:q + 2]])[None]
            naive.append(float(token_nll(tiny_llama(tokens), tokens)[0, -1]))
    np.testing.assert_allclose(stream.nll, naive, atol=1e-5, rtol=0)


def test_recompute_with_a_window_longer_than_the_text_is_dense(tiny_llama, ids, full_forward_nll):
    stream = stream_nll(tiny_llama, ids, Recompute(200), progress=False)
    np.testing.assert_allclose(stream.nll, full_forward_nll, atol=1e-5, rtol=0)


def test_strided_recompute_only_changes_predictions_past_the_first_window(tiny_llama, ids):
    exact = stream_nll(tiny_llama, ids, Recompute(16), fast=False, progress=False).nll
    strided = stream_nll(tiny_llama, ids, Recompute(16), recompute_stride=4, progress=False)
    assert strided.stride == 4 and strided.path == "fast"
    np.testing.assert_allclose(exact[:16], strided.nll[:16], atol=1e-5)
    # the last query of each block of 4 sees the same W tokens as the exact path
    last_of_block = np.arange(16 + 3, len(exact), 4)
    np.testing.assert_allclose(exact[last_of_block], strided.nll[last_of_block], atol=1e-5)
    assert np.abs(exact - strided.nll).max() > 1e-4  # the others see fewer tokens: a real approximation


# -- user-defined policies --------------------------------------------------------------------------


def test_a_user_policy_in_a_few_lines_runs_on_the_exact_path(tiny_llama, ids):
    results = streaming.stream_policies(tiny_llama, ids, [KeepTopAttended(24), Window(24)], progress=False)
    custom = results.filter(metric="perplexity", policy="top-attended").rows[0]
    assert custom["path"] == "exact"  # no band(): the fast path cannot express it, so it falls back
    assert custom["cache_entries_max"] == 24 and custom["window"] == 24
    window = results.value("perplexity", policy="window")
    assert custom["value"] != pytest.approx(window, rel=1e-4)


def test_the_view_a_policy_sees(tiny_llama, ids):
    seen = []

    @dataclasses.dataclass(frozen=True)
    class Spy(CachePolicy):
        window: int = 8

        def keep(self, view):
            seen.append(view)
            return torch.arange(1, view.n)  # evict the oldest: a window

    stream_nll(tiny_llama, ids[:20], Spy(), fast=False, progress=False)
    first = seen[0]
    assert first.step == 8 and first.n == 8
    assert first.positions.tolist() == list(range(8))
    assert first.attention.sum().item() == pytest.approx(1.0, abs=1e-5)  # one query's softmax, averaged
    assert (first.attention_sum >= first.attention - 1e-7).all()
    assert seen[1].positions.tolist() == list(range(1, 9))


@pytest.mark.parametrize("kept, message", [
    (lambda view: torch.arange(view.n), "must free at least one slot"),
    (lambda view: torch.tensor([0, 99]), "allowed 0..7"),
    (lambda view: torch.tensor([1, 1]), "twice"),
])
def test_a_policy_that_keeps_badly_is_refused(tiny_llama, ids, kept, message):
    @dataclasses.dataclass(frozen=True)
    class Bad(CachePolicy):
        window: int = 8

        def keep(self, view):
            return kept(view)

    with pytest.raises(InputError, match=message):
        stream_nll(tiny_llama, ids[:20], Bad(), progress=False)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, message", [
    (lambda: Sinks(4, 4), "W must exceed S"),
    (lambda: Sinks(8, 4), "allowed W >= 9"),
    (lambda: Window(0), "allowed W >= 1"),
    (lambda: Window(-3), "allowed W >= 1"),
    (lambda: Sinks(-1, 16), "allowed S >= 0"),
    (lambda: Recompute(4, 4), "W must exceed S"),
    (lambda: Sinks(0, 16, "newline"), "nothing to replace"),
    (lambda: Sinks(4, 16, "tab"), "allowed newline"),
    (lambda: streaming.policy_grid(["nope"]), "allowed dense, window, sinks, recompute"),
    (lambda: streaming.policy_grid(["window"], replace_sinks="newline"), "--policy sinks"),
])
def test_bad_policy_parameters_are_clear_errors(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_text_shorter_than_the_window_is_an_error(tiny_llama, ids):
    with pytest.raises(InputError, match="not longer than the cache"):
        streaming.stream_policies(tiny_llama, ids[:50], [Sinks(4, 64)], progress=False)


def test_window_beyond_the_context_and_dense_beyond_the_context_are_errors(tiny_llama):
    long = np.full(300, 50)
    with pytest.raises(InputError, match="allowed 1..256"):
        streaming.stream_policies(tiny_llama, long, [Window(300)], progress=False)
    with pytest.raises(InputError, match="beyond the context"):
        streaming.stream_policies(tiny_llama, long, [Dense()], progress=False)


def test_learned_absolute_positions_are_refused_for_cache_policies(tiny_llama, monkeypatch, ids):
    absolute = dataclasses.replace(tiny_llama.sinkbench, positional="absolute")
    monkeypatch.setattr(tiny_llama, "sinkbench", absolute)
    with pytest.raises(InputError, match="learned absolute positions.*recompute"):
        streaming.stream_policies(tiny_llama, ids, [Sinks(4, 16)], progress=False)
    results = streaming.stream_policies(tiny_llama, ids, [Recompute(16)], progress=False)  # re-encoding works on any causal LM
    assert results.value("perplexity", policy="recompute") > 1


def test_gemma3_and_encoders_are_refused(tiny_gemma, tiny_bert, ids):
    with pytest.raises(InputError, match="sliding-window"):
        streaming.stream_policies(tiny_gemma, ids, [Sinks(4, 16)], progress=False)
    with pytest.raises(InputError, match="encoder"):
        streaming.stream_policies(tiny_bert, ids, [Sinks(4, 16)], progress=False)


# -- results, CLI, figures --------------------------------------------------------------------------


def test_rows_state_both_conventions_and_carry_the_curve(tiny_llama, ids):
    results = streaming.stream_policies(tiny_llama, ids, [Sinks(4, 16), Dense()], curve_bin=10, progress=False)
    row = results.filter(metric="perplexity", policy="sinks").rows[0]
    assert (row["sinks"], row["window"], row["recent"], row["cache_size"]) == (4, 16, 12, 16)
    nll = results.filter(metric="nll", policy="sinks").df
    assert list(nll["position"][:2]) == [10, 20] and nll["n"].sum() == len(ids) - 1
    loss = results.value("loss", policy="sinks")
    assert row["value"] == pytest.approx(np.exp(loss))
    assert (nll["value"] * nll["n"]).sum() / nll["n"].sum() == pytest.approx(loss)
    dense = results.filter(metric="perplexity", policy="dense").rows[0]
    assert dense["window"] is None and dense["cache_size"] == len(ids)
    assert results.provenance["data_sha256"] and results.provenance["experiment"] == "stream"


def test_a_killed_sweep_resumes_from_its_journal(tiny_llama, ids, tmp_path, monkeypatch):
    out = tmp_path / "sweep.json"
    policies = [Window(16), Sinks(4, 16)]
    calls = []
    real = streaming.stream_nll

    def dies_on_the_second(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("workbench.streaming.run.stream_nll", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        streaming.stream_policies(tiny_llama, ids, policies, out=out, progress=False)
    calls.clear()
    monkeypatch.setattr("workbench.streaming.run.stream_nll", lambda *a, **k: (calls.append(a[2]), real(*a, **k))[1])
    results = streaming.stream_policies(tiny_llama, ids, policies, out=out, progress=False)
    assert calls == [Sinks(4, 16)]  # the finished window run was not recomputed
    assert set(Results.load(out).df["policy"]) == {"window", "sinks"} == set(results.df["policy"])


def test_cli_stream_writes_rows_with_policy_sinks_window(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 4)
    out = tmp_path / "stream.json"
    assert cli.main(["stream", "--model", "tiny-llama", "--text-file", str(text), "--policy", "window", "sinks",
                     "--sinks", "1", "4", "--window", "32", "--max-tokens", "200", "--json", str(out)]) == 0
    results = Results.load(out)
    table = results.filter(metric="perplexity").df
    assert sorted(zip(table["policy"], table["sinks"], table["window"])) == [
        ("sinks", 1, 32), ("sinks", 4, 32), ("window", 0, 32)]
    assert len(results.filter(metric="nll", policy="window")) == 199  # every token of the curve
    assert results.provenance["bos_policy"] == "bos" and results.provenance["n_tokens"] == 200
    assert "perplexity" in capsys.readouterr().out


def test_cli_stream_reads_jsonl_records_as_one_stream(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"tokens": list(range(10, 90))}) + "\n" + json.dumps({"tokens": [7] * 40}) + "\n")
    out = tmp_path / "s.json"
    assert cli.main(["stream", "--model", "tiny-llama", "--jsonl", str(path), "--policy", "window", "--window", "16",
                     "--json", str(out)]) == 0
    results = Results.load(out)
    assert results.provenance["n_tokens"] == 120 and results.provenance["bos_policy"] == "as-given"


@pytest.mark.parametrize("args, message", [
    (["--window", "4", "--sinks", "4"], "W must exceed S"),
    (["--policy", "window", "--window", "0"], "allowed W >= 1"),
    (["--sinks", "-1"], "allowed S >= 0"),
    (["--window", "200", "--max-tokens", "150"], "not longer than the cache"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, args, message):
    text = tmp_path / "t.txt"
    text.write_text("Attention sinks soak up attention. " * 40)
    assert cli.main(["stream", "--model", "tiny-llama", "--text-file", str(text), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sinkbench: error:") and message in err and "Traceback" not in err


def test_stream_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["stream", "--help"])
    assert "example:" in capsys.readouterr().out


def test_figure_recipes_draw_the_table_and_the_curves(fake_corpus, tmp_path):
    from workbench import gallery

    done = gallery.build(["streaming-sinks", "streaming-curves"], out=tmp_path, model="tiny-llama", quick=True,
                         log=lambda _: None)
    assert [d["name"] for d in done] == ["streaming-sinks", "streaming-curves"]
    import pandas as pd

    table = pd.read_csv(tmp_path / "streaming-sinks.csv")
    assert sorted(set(table["cache_size"])) == [16, 32] and sorted(set(table["sinks"])) == [0, 1, 2, 4, 8]
    assert (table["cache_size"] - table["sinks"] == table["recent"]).all() and (table["perplexity"] > 1).all()
    curves = pd.read_csv(tmp_path / "streaming-curves.csv")
    assert set(curves["policy"]) == {"dense", "window", "sinks", "recompute"}
    assert (tmp_path / "streaming-curves.png").stat().st_size > 0


# -- hooks and interventions while streaming (issue 14) ----------------------------------------------


def test_hooks_fire_while_streaming_on_both_paths_with_the_cache_as_the_key_axis(tiny_llama, ids):
    seen = {"exact": [], "fast": []}
    for path, fast in (("exact", False), ("fast", True)):
        hooks = [(f"blocks.1.attn.{name}", lambda t, hook, name=name, path=path: seen[path].append((name, t.shape)))
                 for name in ("hook_attn_scores", "hook_pattern", "hook_z")]
        with tiny_llama.hooks(fwd_hooks=hooks):
            stream_nll(tiny_llama, ids[:40], Sinks(2, 16), fast=fast, chunk=16, progress=False)
    exact = [shape for name, shape in seen["exact"] if name == "hook_pattern"]
    assert len(exact) == 39 and exact[0] == (1, 4, 1, 1) and exact[-1] == (1, 4, 1, 16)  # slots: at most W
    assert ("hook_z", (1, 1, 4, 16)) in seen["exact"]  # [1, c, H, d_head]
    fast = [shape for name, shape in seen["fast"] if name == "hook_pattern"]
    assert fast[0] == (1, 4, 16, 18)  # chunk of 16 queries x (2 sinks | 16 band keys)
    assert [name for name, _ in seen["exact"][:3]] == ["hook_attn_scores", "hook_pattern", "hook_z"]


@pytest.mark.parametrize("policy", [Sinks(2, 16), Window(16), Recompute(16)])
def test_an_identity_edit_reproduces_the_stream_and_an_intervention_changes_it(tiny_llama, ids, policy):
    text = ids[:40]
    base = stream_nll(tiny_llama, text, policy, fast=False, progress=False).nll
    same = stream_nll(tiny_llama, text, policy, fast=False, progress=False, intervention="scale-sink:gamma=1.0")
    np.testing.assert_allclose(same.nll, base, atol=1e-6, rtol=0)
    edited = stream_nll(tiny_llama, text, policy, fast=not policy.recompute, progress=False,
                        intervention="scale-sink:gamma=0.5")
    assert edited.path == "exact"  # dense / window / sinks: token by token whatever `fast` says
    assert np.abs(edited.nll - base).max() > 1e-4


def test_a_streaming_intervention_registers_its_hooks_once_per_run(tiny_llama, ids, monkeypatch):
    """Registering through the bridge walks every hook point: once per run, not once per token."""
    entered = []
    hooks = type(tiny_llama).hooks

    def counting(self, *args, **kwargs):
        entered.append(len(kwargs.get("fwd_hooks", args[0] if args else [])))
        return hooks(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny_llama), "hooks", counting)
    stream = stream_nll(tiny_llama, ids[:30], Sinks(2, 16), progress=False, intervention="scale-sink:gamma=0.5")
    assert len(stream.nll) == 29 and len(entered) == 1 and entered[0] > 0


def test_dense_streaming_under_an_intervention_equals_one_intervened_forward_pass(tiny_llama, ids):
    from interventions import parse
    from workbench.passes import PassContext, forward

    intervention = parse("mask-sink:layers=1 + zero-implicit-bias:layers=0")
    ids = ids[:48]
    ctx = PassContext.of(tiny_llama, ids[None])
    with torch.no_grad():
        reference = token_nll(forward(tiny_llama, ids[None], intervention.hooks(tiny_llama, ctx)), ids[None])[0]
    stream = stream_nll(tiny_llama, ids, Dense(), progress=False, intervention=intervention)
    np.testing.assert_allclose(stream.nll, reference.numpy(), atol=1e-4, rtol=0)
    assert np.abs(stream.nll - stream_nll(tiny_llama, ids, Dense(), progress=False).nll).max() > 1e-4


def test_streaming_refuses_an_intervention_whose_hooks_the_cache_does_not_fire(tiny_llama, ids):
    with pytest.raises(InputError, match="needs hook blocks.0.attn.hook_v.*policy recompute"):
        stream_nll(tiny_llama, ids, Sinks(2, 16), progress=False, intervention="zero-sink-value")
    with pytest.raises(InputError, match="unknown intervention"):
        stream_nll(tiny_llama, ids, Sinks(2, 16), progress=False, intervention="nope")


def test_stream_policies_and_the_cli_name_the_intervention_in_their_rows(tiny_llama, ids, tmp_path):
    results = streaming.stream_policies(tiny_llama, ids[:40], [Sinks(2, 16)], progress=False,
                                        intervention="scale-sink:gamma=0.5", attention_block=8)
    assert set(results.df["intervention"]) == {"scale-sink(gamma=0.5)"}
    assert results.provenance["intervention"] == "scale-sink(gamma=0.5)"
    text = tmp_path / "t.txt"
    text.write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 4)
    out = tmp_path / "s.json"
    assert cli.main(["stream", "--model", "tiny-llama", "--text-file", str(text), "--policy", "sinks", "--sinks", "2",
                     "--window", "16", "--max-tokens", "40", "-i", "scale-sink:gamma=0.5", "--attention-block", "4",
                     "--json", str(out)]) == 0
    row = Results.load(out).filter(metric="perplexity").rows[0]
    assert (row["intervention"], row["path"]) == ("scale-sink(gamma=0.5)", "exact")


def test_a_positional_sink_the_cache_does_not_hold_yet_is_absent_not_an_error(tiny_llama, ids):
    plain = stream_nll(tiny_llama, ids[:30], Sinks(4, 16), fast=False, progress=False).nll
    same = stream_nll(tiny_llama, ids[:30], Sinks(4, 16), progress=False, intervention="scale-sink:gamma=1,sink=0,1,2,3")
    np.testing.assert_allclose(same.nll, plain, atol=1e-6, rtol=0)
    masked = stream_nll(tiny_llama, ids[:30], Sinks(4, 16), progress=False, intervention="mask-sink:sink=0,1,2,3")
    assert np.abs(masked.nll - plain).max() > 1e-4
