"""Mitigation lab: small transformers trained on CPU, to watch attention sinks emerge — or not.

    >>> from workbench import toy
    >>> results = toy.train("runs/bb-softmax", *toy.preset("default", attention="softmax", seed=0))
    >>> model = toy.load_toy("runs/bb-softmax")        # = workbench.models.load("toy:runs/bb-softmax")

- `model`: the transformer, one readable file, with the attention variants side by side (`VARIANTS`)
  and TransformerLens hook names, so every probe and intervention runs on it unchanged;
- `tasks`: Bigram-Backcopy (Guo et al. 2024) and character-level text (`TASKS`);
- `train`: deterministic training with checkpoints, resumption and per-step sink curves;
- `checkpoint`: safetensors checkpoints that refuse to load into another architecture.
"""

from workbench.toy.checkpoint import load_toy, load_weights, save_weights
from workbench.toy.model import VARIANTS, ToyConfig, ToyTransformer, Variant
from workbench.toy.tasks import TASKS, BigramBackcopy, CharLM, make_task
from workbench.toy.train import PRESETS, TrainConfig, emergence_results, preset, read_curves, summarize, train

__all__ = ["PRESETS", "TASKS", "VARIANTS", "BigramBackcopy", "CharLM", "ToyConfig", "ToyTransformer", "TrainConfig",
           "Variant", "emergence_results", "load_toy", "load_weights", "make_task", "preset", "read_curves", "save_weights", "summarize",
           "train"]
