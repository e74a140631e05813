"""Attention sinks in Vision Transformers: [CLS] and background-patch sinks, high-norm tokens, registers.

    >>> from workbench import experiment, probes, vision, zoo
    >>> from workbench.probes.high_norm import mark_high_norm
    >>> model = zoo.load("shapes-vit-reg4")          # trained here: `sinkbench train-vit --preset shapes-vit-reg4`
    >>> images = mark_high_norm(model, vision.image_set(model, "shapes", n=64), "top:1")
    >>> probes.image_attention(model, images)           # where attention goes: [CLS], registers, background, object
    >>> probes.patch_norms(model, images)               # norm maps, histograms, two populations?
    >>> experiment.run(model, images, ["mask-sink:sink=reg", "test-time-register"])   # accuracy, logit change, KL

This room holds the image models, their inputs and their training; what is measured on them lives in
`workbench.probes` (including which patches are high-norm, `probes.high_norm`). The language-model
machinery applies unchanged: an image batch's `tokens` are the kinds of its positions
(`workbench.core.positions`), its model inputs are pixels (`images.ImageSet.model_inputs`), so every
probe, intervention and figure takes an `ImageSet` where it takes token data. Modules:
- `vit`: HF ViT / DeiT in the zoo; register tokens as a thin extension of HF ViT;
- `shapes`: procedurally generated shapes on plain backgrounds, background patches read from the image;
- `images`: `ImageSet`, `image_set`, high-norm rules (`HighNormRule`);
- `presets`, `train`: the small ViTs trained here (`ViTTrainConfig`, `VIT_PRESETS`, `sinkbench train-vit`);
- `zoo_entries`: how the zoo learns about ViTs (registered without importing torch).
"""

from workbench.core.lazy import lazy_face

_PUBLIC = {**dict.fromkeys(["HighNormRule", "ImageSet", "image_set"], "workbench.vision.images"),
           **dict.fromkeys(["VIT_PRESETS", "ViTTrainConfig"], "workbench.vision.presets"),
           **dict.fromkeys(["SHAPES", "background_patches", "shapes"], "workbench.vision.shapes"),
           "train_vit": "workbench.vision.train"}

__all__ = ["SHAPES", "VIT_PRESETS", "HighNormRule", "ImageSet", "ViTTrainConfig", "background_patches", "image_set",
           "shapes", "train_vit", "trained"]


def trained(name: str = "shapes-vit", log=print):
    """A zoo model trained here, trained first if it is not in the cache yet (deterministic), then loaded.

        >>> model = trained("shapes-vit-reg4")
    """
    from workbench import zoo
    from workbench.core.families import ensure_registered

    ensure_registered()
    if name not in zoo.TRAINED:
        raise zoo.ModelNotAvailable(f"{name!r} is not a trained-here model: use one of {', '.join(zoo.TRAINED)}")
    zoo.fetch(name, log=log)
    return zoo.load(name)


lazy_face(__name__, _PUBLIC)  # submodules load on first use: registering with the zoo imports no torch
