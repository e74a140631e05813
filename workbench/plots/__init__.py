"""Plots: Results in, (figure, DataFrame of exactly what is plotted) out. A plot never runs a model.

    >>> from workbench import plots
    >>> fig, frame = plots.sink_grid(probes.sinks(model, windows))
    >>> plots.style.save(fig, frame, "out/sink-grid")      # sink-grid.png, .pdf and .csv
    >>> plots.show(fig)                                    # in a notebook

One style (`style`: sizes, fonts, palette, save) and one module per domain: `attention`, `activations`
(massive activations), `contributions` (norms, the implicit bias), `interventions`, `moe` (experts and sinks), `quant`
(quantising around sinks), `streaming`, `toy`, `vision`. Titles name the metric, the model and the text, read from the
Results' provenance. The survey figures that compute their Results and then call these live in
`workbench.gallery`.
"""

from workbench.plots import style
from workbench.plots.activations import massive_3d, massive_layerwise
from workbench.plots.attention import (
    attention_heatmaps,
    control_prompts,
    depth_profile,
    position_zero,
    sink_grid,
    special_tokens,
)
from workbench.plots.contributions import implicit_bias_constancy, norms
from workbench.plots.heads import head_comparison
from workbench.plots.interventions import (
    attribution_scatter,
    dormant_heads,
    intervention_effects,
    sweep_heatmap,
    sweep_profile,
)
from workbench.plots.long_context import interventions_vs_length, sink_position_profile, sink_ratio_vs_length
from workbench.plots.moe import super_expert_pruning
from workbench.plots.multimodal import visual_sinks_overview
from workbench.plots.quant import quant_activations, quant_kv_bits
from workbench.plots.streaming import streaming_curves, streaming_perplexity
from workbench.plots.toy import emergence_curves
from workbench.plots.vision import (
    vit_attention_by_kind,
    vit_attention_maps,
    vit_norm_histograms,
    vit_norm_maps,
)


def show(fig) -> None:
    """Display a figure in a notebook as PNG, whatever matplotlib backend is active, and close it.

        >>> plots.show(plots.sink_grid(results)[0])
    """
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    plt.close(fig)
    display(Image(buffer.getvalue()))


__all__ = ["attention_heatmaps", "attribution_scatter", "control_prompts", "depth_profile", "dormant_heads",
           "emergence_curves", "head_comparison", "implicit_bias_constancy", "intervention_effects", "interventions_vs_length", "massive_3d", "massive_layerwise",
           "norms", "position_zero", "quant_activations", "quant_kv_bits", "show", "sink_grid", "sink_position_profile", "sink_ratio_vs_length", "special_tokens", "streaming_curves",
           "streaming_perplexity", "style", "super_expert_pruning",
           "sweep_heatmap", "sweep_profile", "vit_attention_by_kind", "vit_attention_maps", "vit_norm_histograms",
           "visual_sinks_overview", "vit_norm_maps"]
