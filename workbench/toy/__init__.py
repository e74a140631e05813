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

_PUBLIC = {**dict.fromkeys(["load_toy", "load_weights", "save_weights"], "workbench.toy.checkpoint"),
           **dict.fromkeys(["VARIANTS", "ToyConfig", "ToyTransformer", "Variant"], "workbench.toy.model"),
           **dict.fromkeys(["TASKS", "BigramBackcopy", "CharLM", "make_task"], "workbench.toy.tasks"),
           **dict.fromkeys(["PRESETS", "TrainConfig", "emergence_results", "preset", "read_curves", "summarize",
                            "train"], "workbench.toy.train")}

__all__ = ["PRESETS", "TASKS", "VARIANTS", "BigramBackcopy", "CharLM", "ToyConfig", "ToyTransformer", "TrainConfig",
           "Variant", "emergence_results", "load_toy", "load_weights", "make_task", "preset", "read_curves", "save_weights", "summarize",
           "train"]


def __getattr__(name: str):
    # Submodules load on first use, so registering the family with the zoo does not import torch.
    import importlib

    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
