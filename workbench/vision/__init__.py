"""Attention sinks in Vision Transformers: [CLS] and background-patch sinks, high-norm tokens, registers.

    >>> from workbench import models, probes, vision
    >>> model = zoo.load("shapes-vit-reg4")          # trained here: `sinkbench train-vit --preset shapes-vit-reg4`
    >>> images = vision.image_set(model, "shapes", n=64).mark_high_norm(model, "top:1")
    >>> probes.image_attention(model, images)           # where attention goes: [CLS], registers, background, object
    >>> probes.patch_norms(model, images)               # norm maps, histograms, two populations?
    >>> experiment.run(model, images, ["mask-sink:sink=reg", "test-time-register"])   # accuracy, logit change, KL

The language-model machinery applies unchanged: an image batch's `tokens` are the kinds of its positions
(`positions`), its model inputs are pixels (`images.ImageSet.model_inputs`), so every probe, intervention
and figure takes an `ImageSet` where it takes token data. Modules:
- `vit`: HF ViT / DeiT in the zoo; register tokens as a thin extension of HF ViT;
- `positions`: [CLS] | patches | registers, their kinds, and the image sinks (cls, reg, reg:K, bg, obj,
  top-norm, patch:R,C);
- `shapes`: procedurally generated shapes on plain backgrounds, background patches read from the image;
- `images`: `ImageSet`, `image_set`, high-norm rules (`HighNormRule`);
- `presets`, `train`: the small ViTs trained here (`sinkbench train-vit`).
"""

_PUBLIC = {"HighNormRule": "workbench.vision.images", "ImageSet": "workbench.vision.images",
           "image_set": "workbench.vision.images", "PRESETS": "workbench.vision.presets",
           "TrainConfig": "workbench.vision.presets", "SHAPES": "workbench.vision.shapes",
           "background_patches": "workbench.vision.shapes", "shapes": "workbench.vision.shapes"}

__all__ = ["PRESETS", "SHAPES", "HighNormRule", "ImageSet", "TrainConfig", "background_patches", "image_set", "shapes",
           "train_vit", "trained"]


def train_vit(*args, **kwargs):
    """Train a small ViT on generated shapes (see workbench.vision.train.train_vit)."""
    from workbench.vision.train import train_vit as train

    return train(*args, **kwargs)


def trained(name: str = "shapes-vit", log=print):
    """A zoo model trained here, trained first if it is not in the cache yet (deterministic; about a minute
    on 2 cores), then loaded.

        >>> model = trained("shapes-vit-reg4")
    """
    from workbench import zoo
    from workbench.core.families import ensure_registered

    ensure_registered()
    if name not in zoo.TRAINED:
        raise zoo.ModelNotAvailable(f"{name!r} is not a trained-here model: use one of {', '.join(zoo.TRAINED)}")
    zoo.fetch(name, log=log)
    return zoo.load(name)


def __getattr__(name: str):
    # Submodules load on first use, so registering the family with the zoo does not import torch.
    import importlib

    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
