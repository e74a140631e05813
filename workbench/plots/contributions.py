"""What a head writes, not only where it looks: value norms and the norm-based share of the sink
(Kobayashi et al. 2020), and how constant the sink term A[q, 0] v_0 W_O is (the implicit attention bias).

    >>> fig, frame = norms(probes.norms(model, windows))
    >>> fig, frame = implicit_bias_constancy(probes.implicit_bias(model, windows))
"""

from __future__ import annotations

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require, text_of


def norms(results: Results):
    """Kobayashi et al. 2020: attention weight vs what the head writes, sink vs other keys, per layer
    (means over heads). Left: ||v||; right: attention share of the sink vs its norm-based share."""
    frame = results.df
    table = frame[frame["head"].notna()].pivot_table(index="layer", columns="metric", values="value", aggfunc="mean")
    needed = ["value_norm_sink", "value_norm_other", "attention_share_sink", "contribution_share_sink"]
    for metric in needed:
        if metric not in table:
            require(frame, metric, "norms")
    fig, (left, right) = style.new_figure("double", height=2.6, ncols=2)
    left.plot(table.index, table.value_norm_sink, "o-", ms=2.5, label="sink (token 0)")
    left.plot(table.index, table.value_norm_other, "s-", ms=2.5, label="other tokens")
    left.set_xlabel("layer")
    left.set_ylabel("||v|| (mean over heads)")
    left.legend()
    left.set_title("value norms", loc="left")
    fig.suptitle(f"attention is not only a weight | {model_of(results)} | {text_of(results)}", x=0.02, ha="left",
                 fontsize=8.5)
    right.plot(table.index, table.attention_share_sink, "o-", ms=2.5, label="attention share (A)")
    right.plot(table.index, table.contribution_share_sink, "s-", ms=2.5, label="norm-based share (||A v W_O||)")
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("layer")
    right.set_ylabel("share going to the sink")
    right.legend()
    right.set_title("share of the sink: weight vs what is written", loc="left")
    return fig, table[needed].reset_index()


def implicit_bias_constancy(results: Results):
    """How constant the sink term A[q, s] v_s W_O is across queries and inputs, vs a non-sink term
    (median over heads per layer; RMS coefficient of variation), and its share of the head output."""
    frame = results.df
    table = frame[frame["head"].notna()].pivot_table(index="layer", columns="metric", values="value",
                                                     aggfunc="median")
    for metric in ("sink_term_cv", "null_term_cv", "sink_term_share"):
        if metric not in table:
            require(frame, metric, "implicit_bias_constancy")
    fig, (left, right) = style.new_figure("double", height=2.6, ncols=2)
    left.plot(table.index, table.sink_term_cv, "o-", ms=2.5, label="sink term (token 0)")
    left.plot(table.index, table.null_term_cv, "s-", ms=2.5, label="term of token 1 (null)")
    left.set_yscale("log")
    left.set_xlabel("layer")
    left.set_ylabel("coeff. of variation (median, heads)")
    left.legend()
    left.set_title("constancy of the sink term A[q,0] v_0 W_O", loc="left")
    fig.suptitle(f"implicit attention bias | {model_of(results)} | {text_of(results)}", x=0.02, ha="left", fontsize=8.5)
    right.plot(table.index, table.sink_term_share, "o-", ms=2.5, color=style.PALETTE[2])
    right.set_ylim(0, max(1.0, float(table.sink_term_share.max()) * 1.05))
    right.set_xlabel("layer")
    right.set_ylabel("||sink term|| / ||head output||")
    right.set_title("size of the sink term", loc="left")
    return fig, table[["sink_term_cv", "null_term_cv", "sink_term_share"]].reset_index()

