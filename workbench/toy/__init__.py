"""Mitigation lab: small transformers trained on CPU, to watch attention sinks emerge — or not.

    >>> from workbench import toy
    >>> results = toy.train("runs/bb-softmax", *toy.preset("default", attention="softmax", seed=0))
    >>> model = toy.load_toy("runs/bb-softmax")        # = workbench.zoo.load("toy:runs/bb-softmax")

- `presets`: what a toy can be, as data (no torch): the attention variants (`VARIANTS`), the tasks
  (`TASKS`) and the training presets (`TOY_PRESETS`);
- `model`: the transformer, one readable file, with the attention variants side by side and
  TransformerLens hook names, so every probe and intervention runs on it unchanged; with `n_experts > 0` its
  MLPs are Mixtures of Experts (top-k router, TransformerLens's MoE hook names; `MOE_PRESETS`);
- `tasks`: Bigram-Backcopy (Guo et al. 2024) and character-level text;
- `train`: deterministic training with checkpoints, resumption and per-step sink curves
  (`ToyTrainConfig`, `preset`, `holds_run`);
- `checkpoint`: safetensors checkpoints that refuse to load into another architecture;
- `zoo_entries`: how the zoo learns to load `toy:DIR` (registered without importing torch).
"""

from workbench.core.lazy import lazy_face

_PUBLIC = {**dict.fromkeys(["load_toy", "load_weights", "save_weights"], "workbench.toy.checkpoint"),
           **dict.fromkeys(["ToyConfig", "ToyTransformer"], "workbench.toy.model"),
           **dict.fromkeys(["MOE_PRESETS", "TASKS", "TOY_PRESETS", "VARIANTS", "Variant"], "workbench.toy.presets"),
           **dict.fromkeys(["BigramBackcopy", "CharLM", "make_task"], "workbench.toy.tasks"),
           **dict.fromkeys(["ToyTrainConfig", "emergence_results", "holds_run", "preset", "read_curves",
                            "summarize", "train"], "workbench.toy.train")}

__all__ = ["MOE_PRESETS", "TASKS", "TOY_PRESETS", "VARIANTS", "BigramBackcopy", "CharLM", "ToyConfig", "ToyTrainConfig",
           "ToyTransformer", "Variant", "emergence_results", "holds_run", "load_toy", "load_weights", "make_task",
           "preset", "read_curves", "save_weights", "summarize", "train"]


lazy_face(__name__, _PUBLIC)  # submodules load on first use: registering with the zoo imports no torch
