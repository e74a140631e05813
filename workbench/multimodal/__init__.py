"""Multimodal LLMs: a frozen vision encoder, a projector and a causal LM over S = [BOS] [V'] text (issue 21).

    >>> from workbench import multimodal, probes, zoo
    >>> from interventions.multimodal import answer_accuracy
    >>> model = zoo.load("shapes-llava")                   # trained here: `sinkbench models fetch shapes-llava`
    >>> data = multimodal.mixed_set(model, n=64)            # generated scenes + questions (shape, colour, position, count)
    >>> probes.mixed_attention(model, data)                 # text queries' attention: BOS, visual bg / obj, question
    >>> probes.visual_sink_activations(model, data)         # do visual sinks carry the BOS sink's dimensions?
    >>> answer_accuracy(model, data, ["none", "mask-visual-sinks", "var"])

This room holds the multimodal models, their inputs and their training; what is measured on them lives in
`workbench.probes.mixed` and what edits them in `interventions.multimodal`. The language-model machinery applies
unchanged: a mixed batch's `tokens` are the input ids with each position's kind in the high bits
(`workbench.core.positions`: visual background / object, question, answer), its model inputs are the input
embeddings with the projected image features at the image slots (`data.MixedSet.model_inputs`), so every probe and
intervention takes a mixed set where it takes token data, with sinks `bos`, `visual`, `bg`, `obj`, `question`,
`answer`. Modules:
- `llava`: LLaVA (HF `LlavaForConditionalGeneration`) through TransformerLens's LLaVA adapter; tiny-llava;
- `scenes`: generated scenes with their object masks, and the four question types;
- `data`: `MixedSet`, `mixed_set`, `answer_logits`;
- `presets`, `train`: the LLaVA trained here (`LlavaTrainConfig`, `LLAVA_PRESETS`, `train_llava`);
- `zoo_entries`: how the zoo learns about LLaVA models (registered without importing torch).
"""

from workbench.core.lazy import lazy_face

_PUBLIC = {**dict.fromkeys(["MixedSet", "answer_logits", "mixed_set"], "workbench.multimodal.data"),
           **dict.fromkeys(["QUESTIONS", "Scenes", "scenes"], "workbench.multimodal.scenes"),
           **dict.fromkeys(["LLAVA_PRESETS", "LlavaTrainConfig"], "workbench.multimodal.presets"),
           "train_llava": "workbench.multimodal.train",
           **dict.fromkeys(["visual_embeddings"], "workbench.multimodal.llava")}

__all__ = ["LLAVA_PRESETS", "QUESTIONS", "LlavaTrainConfig", "MixedSet", "Scenes", "answer_logits", "mixed_set",
           "scenes", "train_llava", "visual_embeddings"]

lazy_face(__name__, _PUBLIC)  # submodules load on first use: registering with the zoo imports no torch
