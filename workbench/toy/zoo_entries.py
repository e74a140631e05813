"""How the zoo learns about the toy transformers (a family entry point, see workbench.core.families):
`load("toy:DIR")` (or `toy:DIR@STEP`) loads a model trained by `sinkbench train`; the MoE toys trained at setup
(`TRAINED_TOYS`: `sinkbench models fetch moe-toy-bb`, deterministic, about a minute on 2 cores) load by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _load(rest: str, device: Any = None):
    from workbench.toy.checkpoint import load_toy

    return load_toy(rest, device=device)


def _n_params(model: dict, seq_len: int, vocab: int = 67) -> int:
    """Parameters of a toy preset (absolute positions, softmax attention), counted without building it."""
    d, layers = model["d_model"], model["n_layers"]
    experts, width = model.get("n_experts", 0), model.get("d_mlp") or 4 * model["d_model"]
    mlp = experts * 2 * d * width + d * experts if experts else 2 * d * width
    return vocab * d + seq_len * d + layers * (4 * d * d + 4 * d + mlp) + 2 * d + d * vocab


def _trainer(name: str):
    def train(target: Path, log) -> None:
        import os
        import shutil
        import tempfile

        from workbench.core.corpora import fetch_corpus
        from workbench.toy.presets import TRAINED_TOYS
        from workbench.toy.train import preset
        from workbench.toy.train import train as train_toy
        from workbench.zoo.manifest import write_manifest

        base, overrides = TRAINED_TOYS[name]
        model_cfg, train_cfg = preset(base, **overrides)
        # the task reads its corpus, and `models fetch --all` runs before `data fetch --all` on a fresh machine
        fetch_corpus(train_cfg.corpus, log=log)
        log(f"training {name}: preset {base} ({train_cfg.steps} steps, {model_cfg.n_layers} layers x "
            f"{model_cfg.n_experts} experts top-{model_cfg.top_k}, {train_cfg.task}, seed {train_cfg.seed})")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
            staging = Path(tmp) / "run"
            results = train_toy(staging, model_cfg, train_cfg, progress=False, log=log)
            summary = results.provenance["summary"]
            write_manifest(staging, name, f"trained here: workbench.toy preset {base} {overrides}",
                           "MIT (weights trained by Sink Workbench)",
                           {"training": {"summary": summary, "wall_seconds": results.provenance["wall_seconds"]}})
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        log(f"  trained in {results.provenance['wall_seconds']:.1f} s: loss {summary['final_loss']:.3f}, "
            f"bos_attention {summary['final_bos_attention']:.2f}; saved to {target}")
    return train


def _trained(name: str):
    def load(rest: str, device: Any = None):
        from workbench.core.errors import InputError
        from workbench.toy.checkpoint import load_toy
        from workbench.zoo.fetch import verify
        from workbench.zoo.manifest import model_dir

        if rest and not rest.startswith("@"):
            raise InputError(f"unknown model {name + rest!r}: did you mean {name!r} (or {name}@STEP, a snapshot)?")
        manifest = verify(name)
        model = load_toy(str(model_dir(name)) + rest, device=device)
        model.sinkbench.name = name + rest
        if not rest:
            model.sinkbench.weights_sha256 = manifest["weights_sha256"]
        return model
    return load


def register() -> None:
    from workbench.toy.presets import TRAINED_TOYS, check_preset
    from workbench.zoo.cards import TRAINED, ModelCard, register_card
    from workbench.zoo.fetch import register_trainer
    from workbench.zoo.load import register_prefix

    register_prefix("toy:", _load)
    for name, (base, overrides) in TRAINED_TOYS.items():
        model, train = check_preset(base)
        register_card(ModelCard(
            name, "causal-lm", "ToyTransformer", name, _n_params(model, train["seq_len"]), model["n_layers"],
            model["n_heads"], model["n_heads"],
            f"trained here (workbench.toy preset {base!r}, {train['steps']} steps): {model['n_layers']} layers whose "
            f"MLPs are {model['n_experts']} experts (top-{model['top_k']}), on {overrides['task']}",
            "MIT (weights trained by Sink Workbench)",
            missing_hint=f"model {name!r} is not trained yet: run `sinkbench models fetch {name}` (about a minute "
                         "on 2 cores)"), TRAINED)
        register_trainer(name, _trainer(name))
        register_prefix(name, _trained(name))
