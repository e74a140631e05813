"""What the toys can be, as data: the attention variants, the tasks and the training presets.

    >>> VARIANTS["softmax1"].extra_slot
    True
    >>> TOY_PRESETS["tiny"][1]["steps"]
    200

`sinkbench train --help` and argument errors read these without importing torch (as
`workbench.vision.presets` does for the ViTs); `workbench.toy.model`, `.tasks` and `.train` re-export them
where they are used.
"""

from __future__ import annotations

import dataclasses

from workbench.core.errors import InputError


@dataclasses.dataclass(frozen=True)
class Variant:
    """An attention variant: what its weights are and what interventions may assume about them."""

    name: str
    formula: str
    rows_sum_to_one: bool  # over the real keys; False for sigmoid, relu and the extra-slot variants
    extra_slot: bool  # an extra key with value 0 takes part in the normalisation (`hook_sink`)
    softmax: bool  # the weights are (a slice of) a softmax over logits
    reference: str


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("softmax", "softmax(S)", True, False, True, "Vaswani et al. 2017"),
    Variant("softmax1", "exp(S) / (1 + sum exp(S))", False, True, True, "Miller 2023, 'Attention is off by one'"),
    Variant("sigmoid", "sigmoid(S), no normalisation", False, False, False, "Gu et al. 2025, Table 6"),
    Variant("relu", "relu(S) / (t + 1)", False, False, False, "Guo et al. 2024 (ReLU attention)"),
    Variant("gated", "softmax(S), output * sigmoid(x W_G + b_G)", True, False, True, "Qiu et al. 2025 (G1 gate)"),
    Variant("sink-logit", "softmax([S, s_h])[:-1]", False, True, True, "gpt-oss learnable sinks"),
    Variant("kv-bias", "softmax([S, q.k*/sqrt(d)])[:-1], v* = 0", False, True, True,
            "Gu et al. 2025, Table 4; Sun et al. 2024"),
]}
POSITIONAL = ("absolute", "rotary")
GATES = ("elementwise", "headwise")

TASKS: dict[str, str] = {
    "bigram-backcopy": "Bigram-Backcopy (Guo et al. 2024): bigram text with triggers that copy the previous token",
    "char-lm": "character-level language modelling on a bundled corpus",
}

# Presets: architecture + training. Guo et al. train d_model 256 with batch 512 x 256 tokens at lr 3e-4;
# on CPU we use 32 x 64 tokens and a larger learning rate, so that the softmax sink forms within the first
# 1k steps (at lr 3e-4 and these batches it forms later: README, "Mitigation lab"). Every variant uses the
# same settings.
# - "default": the reproduction (the README's table);
# - "figure": the figure recipe's reduced run (`sinkbench figures toy-emergence`);
# - "tiny": the unit tests.
TOY_PRESETS: dict[str, tuple[dict, dict]] = {
    "default": (dict(d_model=256, n_layers=1, n_heads=1),
                dict(batch_size=32, seq_len=64, lr=1e-3, steps=1000, log_every=10, eval_size=64,
                     checkpoint_every=250)),
    "figure": (dict(d_model=64, n_layers=1, n_heads=1),
               dict(batch_size=32, seq_len=32, lr=3e-3, steps=400, log_every=10, eval_size=64, checkpoint_every=200)),
    "tiny": (dict(d_model=64, n_layers=1, n_heads=1),
             dict(batch_size=32, seq_len=32, lr=3e-3, steps=200, log_every=10, eval_size=32, checkpoint_every=100)),
}

# Mixture-of-Experts toys (issue 19): 2 layers whose MLPs are 8 ReLU experts, top-2, with the load-balancing loss at
# Fedus et al.'s 0.01. "moe" is the trained-here zoo model `moe-toy-bb` (sinkbench models fetch moe-toy-bb);
# "moe-tiny" the unit tests. `preset` and `sinkbench train --preset` take them like the dense ones.
MOE_PRESETS: dict[str, tuple[dict, dict]] = {
    "moe": (dict(d_model=64, n_layers=2, n_heads=1, d_mlp=64, n_experts=8, top_k=2),
            dict(batch_size=32, seq_len=32, lr=3e-3, steps=800, log_every=50, eval_size=64, checkpoint_every=200,
                 router_aux_coef=0.01)),
    "moe-tiny": (dict(d_model=32, n_layers=2, n_heads=1, d_mlp=32, n_experts=4, top_k=2),
                 dict(batch_size=16, seq_len=16, lr=3e-3, steps=20, log_every=10, eval_size=16, checkpoint_every=10,
                      router_aux_coef=0.01)),
}

# MoE toys trained at setup (`sinkbench models fetch NAME`, workbench.toy.zoo_entries): name -> (preset, overrides)
TRAINED_TOYS: dict[str, tuple[str, dict]] = {
    "moe-toy-bb": ("moe", dict(task="bigram-backcopy", attention="softmax", seed=0)),
}


def check_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise InputError(f"unknown attention variant {name!r}: available {', '.join(VARIANTS)}")
    return VARIANTS[name]


def check_task(name: str) -> str:
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}: available {', '.join(TASKS)}")
    return name


def check_preset(name: str) -> tuple[dict, dict]:
    """The (model, training) settings of a dense preset (`TOY_PRESETS`) or an MoE one (`MOE_PRESETS`)."""
    known = {**TOY_PRESETS, **MOE_PRESETS}
    if name not in known:
        raise InputError(f"unknown preset {name!r}: available {', '.join(known)}")
    return known[name]
