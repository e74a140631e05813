"""Read-only measurements of attention sinks. Each probe hooks only what it reads and returns Results.

    >>> from workbench import probes
    >>> res = probes.by_name("sinks", model, data, eps=[0.3, 0.5])
    >>> print(probes.PROBES["sinks"].summarize(res))

| probe | metrics (rows) |
|---|---|
| `sinks` | first_token_attention / sink_attention, last_token_attention (layer, head); sink_ratio, sink_ratio_per_sequence (eps[, layer]); uniform_attention |
| `sink-tokens` | attention_received, uniform_baseline, ratio_to_uniform, first_occurrence_ratio (rank, token) |
| `massive-activations` | top1..topK, median, top1_to_median, massive_count, massive_dims, first_token_norm_ratio (layer); first_massive_layer |
| `norms` | value/fnorm/written/key norms and qk cosines, sink vs other; attention_share_sink, contribution_share_sink (layer, head) |
| `implicit-bias` | sink_term_norm, sink_term_share, sink_term_cv, null_term_cv, null_term_norm (layer, head); sink_value_max_deviation[_relative] (layer, kv_head) |
| `heads` | head_class (value = sink score, label), head_count (label) |
| `attention-maps` | attention (layer, head, q, k) averaged over sequences |
| `image-attention` | image models: attention_share / attention_per_token / ratio_to_uniform per kind ([CLS], registers, background, object, high-norm), background_to_object_ratio (layer, head); attention_received / cls_attention maps |
| `patch-norms` | image models: norm_mean per kind, norm_median/max, high_norm_fraction, ashman_d (two populations?), norm_histogram (layer); example_norm maps |
| `routing` | MoE models: expert_load, gate_weight (layer, expert, token_class sink/other); routing_entropy, load_imbalance (layer, token_class); sink_top_expert (layer) |
| `mixed-attention` | multimodal LMs: the text queries' attention_share / attention_per_token per kind (bos, visual-bg, visual-obj, question, answer) (layer, head); visual_sink_fraction / _share / _background_fraction, top_visual_share (layer); visual_attention_received maps |
| `visual-sinks` | multimodal LMs: sink_dim_ratio, massive_fraction (layer, group bos / visual-sink / visual-other / visual-bg / visual-obj / question); sink_dim (layer, rank); visual_sink_count (layer) |
| `super-experts` | MoE models: massive_contribution, massive_share, output_norm, raw_output_norm, routed_share, rank (layer, expert) at the sink; massive_ratio (layer); super_expert (rank) |

Probes that take `sink=` accept every form of workbench.core.sites.SinkSpec, per-sequence sinks included
(`first:tok:.`, a [sequences, T] bool mask, a function tokens -> mask), in one batched call.
Every probe also takes `hooks=` (extra forward hooks that run in the same passes, e.g. an intervention's:
`experiment.batch_hooks`), so a probe can measure an edited model without importing the catalogue.
Every probe takes token data (workbench.core.data.Dataset) or, on image models, an ImageSet
(workbench.vision.image_set): its position kinds act as tokens, so `sink="bg"`, `"reg"`, `"top-norm"`... work.
`PROBES` (names, summaries, summaries' printers) is read without importing torch; each probe function is
imported when first used (`probes.sinks`, `PROBES["sinks"].measure`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from workbench.core.errors import InputError
from workbench.core.lazy import lazy_face

# each probe function and the module that defines it: imported on first use, so listing the probes
# (`sinkbench probe --help`, an unknown probe name) imports no torch
_FUNCTIONS = {**dict.fromkeys(["massive_activations"], "workbench.probes.activations"),
              **dict.fromkeys(["heads"], "workbench.probes.heads"),
              **dict.fromkeys(["implicit_bias", "norms"], "workbench.probes.norms"),
              **dict.fromkeys(["image_attention", "patch_norms"], "workbench.probes.patches"),
              **dict.fromkeys(["routing", "super_experts"], "workbench.probes.routing"),
              **dict.fromkeys(["mixed_attention", "visual_sink_activations", "visual_sinks"],
                              "workbench.probes.mixed"),
              **dict.fromkeys(["attention_maps", "detect_sinks", "sink_ratio_controls", "sink_tokens", "sinks",
                               "special_token_attention"], "workbench.probes.sinks")}


@dataclasses.dataclass(frozen=True)
class Probe:
    """A registered probe: its name, the function that measures and a one-line summary; `summarize(results)`
    is what `sinkbench probe NAME` prints. `function` is the function itself, or its name ("sinks" in this
    package, "package.module:name" elsewhere), imported when the probe first measures."""

    name: str
    function: str | Callable[..., Any]
    summary: str
    summarize: Callable[..., str] | None = None

    @property
    def measure(self) -> Callable[..., Any]:
        """The probe function, `measure(model, data, **options) -> Results`."""
        if callable(self.function):
            return self.function
        module, _, name = self.function.rpartition(":")
        return getattr(importlib.import_module(module or __name__), name)


def _generic(metric: str, columns: list[str]) -> Callable[[Any], str]:
    def summarize(results) -> str:
        frame = results.df[results.df.metric == metric]
        by_layer = frame.groupby("layer").value.agg(["mean", "max"]) if "layer" in frame else None
        head = f"{metric} per layer (mean / max over heads)"
        body = "\n".join(f"  layer {int(k):>2}: {v['mean']:.4f} / {v['max']:.4f}" for k, v in by_layer.iterrows())
        return head + "\n" + body
    return summarize


def _sinks_summary(results) -> str:
    from workbench.probes.sinks import summarize

    return summarize(results)


def _massive_summary(results) -> str:
    from workbench.probes.activations import summarize

    return summarize(results)


def _heads_summary(results) -> str:
    from workbench.probes.heads import summarize

    return summarize(results)


def _tokens_summary(results) -> str:
    frame = results.df.pivot_table(index=["rank", "token", "count"], columns="metric", values="value").reset_index()
    frame["token"] = frame["token"].map(repr)
    return "tokens ranked by attention received / uniform baseline\n" + frame.to_string(index=False)


def _norms_summary(results) -> str:
    frame = results.df.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean")
    keep = ["attention_share_sink", "contribution_share_sink", "value_norm_sink", "value_norm_other",
            "written_norm_sink", "qk_cosine_sink", "qk_cosine_other"]
    return "mean over heads per layer\n" + frame[[k for k in keep if k in frame]].round(4).to_string()


def _image_attention_summary(results) -> str:
    from workbench.probes.patches import summarize_attention

    return summarize_attention(results)


def _patch_norms_summary(results) -> str:
    from workbench.probes.patches import summarize_norms

    return summarize_norms(results)


def _routing_summary(results) -> str:
    from workbench.probes.routing import summarize_routing

    return summarize_routing(results)


def _super_experts_summary(results) -> str:
    from workbench.probes.routing import summarize_super_experts

    return summarize_super_experts(results)


def _mixed_attention_summary(results) -> str:
    from workbench.probes.mixed import summarize_attention

    return summarize_attention(results)


def _visual_sinks_summary(results) -> str:
    from workbench.probes.mixed import summarize_activations

    return summarize_activations(results)


def _bias_summary(results) -> str:
    frame = results.df[results.df["head"].notna()]
    table = frame.pivot_table(index="layer", columns="metric", values="value", aggfunc="median")
    dev = results.df[results.df.metric == "sink_value_max_deviation_relative"].groupby("layer").value.max()
    table["sink_value_max_dev_rel"] = dev
    return "median over heads per layer\n" + table.round(4).to_string()


PROBES: dict[str, Probe] = {p.name: p for p in [
    Probe("sinks", "sinks", "first-token (sink) attention per head and the sink ratio (Gu et al. 2025)", _sinks_summary),
    Probe("sink-tokens", "sink_tokens", "which tokens beyond position 0 act as sinks (vs the uniform baseline)",
          _tokens_summary),
    Probe("massive-activations", "massive_activations", "top-k |activation| per layer vs the median (Sun et al. 2024)",
          _massive_summary),
    Probe("norms", "norms", "value norms and norm-based contributions, sink vs other (Kobayashi et al. 2020)",
          _norms_summary),
    Probe("implicit-bias", "implicit_bias", "the sink term A[q,s] v_s W_O: size, share, constancy (Sun et al. §4.2)",
          _bias_summary),
    Probe("heads", "heads", "label heads sink / dormant candidate / other", _heads_summary),
    Probe("attention-maps", "attention_maps", "attention patterns averaged over sequences (StreamingLLM Fig. 2)",
          _generic("attention", ["layer", "head"])),
    Probe("image-attention", "image_attention", "image models: attention to [CLS], registers, background and object "
          "patches", _image_attention_summary),
    Probe("patch-norms", "patch_norms", "image models: patch-norm maps, norm histograms, high-norm tokens "
          "(Darcet et al. 2024)", _patch_norms_summary),
    Probe("mixed-attention", "mixed_attention", "multimodal LMs: where the text queries attend in [BOS] [V'] text "
          "(visual background / object, question) and the visual sinks (Kang et al. 2025)", _mixed_attention_summary),
    Probe("visual-sinks", "visual_sink_activations", "multimodal LMs: do the visual sinks carry the BOS sink's "
          "massive dimensions? (Kang et al. 2025)", _visual_sinks_summary),
    Probe("routing", "routing", "MoE models: which experts the sink vs the other tokens are routed to, routing entropy "
          "and expert load", _routing_summary),
    Probe("super-experts", "super_experts", "MoE models: experts ranked by what they write on the massive dims at "
          "the sink (Su et al. 2025)", _super_experts_summary),
]}


def by_name(name: str, model: Any, data: Any, **options: Any):
    """Measure with the probe registered as `name` (what `sinkbench probe NAME` runs).

        >>> by_name("massive-activations", model, data, top_k=5)
    """
    if name not in PROBES:
        raise InputError(f"unknown probe {name!r}: available {', '.join(PROBES)}")
    return PROBES[name].measure(model, data, **options)


__all__ = ["PROBES", "Probe", "attention_maps", "by_name", "detect_sinks", "heads", "image_attention", "implicit_bias",
           "massive_activations", "norms", "patch_norms", "routing", "sink_ratio_controls", "sink_tokens", "sinks",
           "special_token_attention", "super_experts", "mixed_attention", "visual_sink_activations", "visual_sinks"]


lazy_face(__name__, _FUNCTIONS)  # the probe functions load on first use (a name may equal its module's)
