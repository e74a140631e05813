"""Tiny random models for tests: the real adapters, random weights, a byte-level tokenizer, no download.

    >>> from workbench import zoo
    >>> model = zoo.load("tiny-llama@3")        # seed 3

Text models are built here; families register their own (`register_tiny`: workbench.vision adds tiny
ViT / DeiT classifiers). Every build runs under a forked, seeded torch RNG, so a name and a seed always
give the same weights.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

from workbench.core import offline
from workbench.core.cache import cache_dir
from workbench.core.errors import InputError, ModelNotAvailable
from workbench.zoo.cards import TINY, ModelCard, register_card, unknown_model_message

# name -> build() -> (hf_model, tokenizer or preprocessing), called under the seeded RNG
TINY_BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {}


def register_tiny(model_card: ModelCard, build: Callable[[], tuple[Any, Any]]) -> None:
    """Add a family's tiny model: its card (listed by `sinkbench models`) and its builder."""
    register_card(model_card, TINY)
    TINY_BUILDERS.setdefault(model_card.name, build)


_TINY_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]


def tiny_seed(name: str) -> int:
    if "@" not in name:
        return 0
    seed = name.split("@", 1)[1]
    if not seed.isdigit():
        raise InputError(f"tiny model seed must be a non-negative integer, got {seed!r} in {name!r}")
    return int(seed)


def tiny_tokenizer():
    """A byte-level tokenizer (256 bytes + specials), saved once to the cache so the bridge can reload it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    directory = cache_dir() / "tiny-tokenizer"
    if not (directory / "tokenizer.json").is_file():
        vocab = {token: index for index, token in enumerate(_TINY_SPECIALS)}
        for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab[char] = len(vocab)
        core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
             pre_tokenizers.Split("", "isolated")]
        )
        core.decoder = decoders.ByteLevel()
        fast = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>",
                                       pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
        directory.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(directory)
        with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}.{os.getpid()}.") as tmp:
            fast.save_pretrained(tmp)
            with contextlib.suppress(OSError):  # another process won the race: theirs is identical
                os.replace(tmp, directory)
    return AutoTokenizer.from_pretrained(directory)


def _remove_stale_builds(directory) -> None:
    """Hidden build directories of `directory` (`.NAME.PID.*`) left by a process that was killed outright."""
    import shutil

    for stale in directory.parent.glob(f".{directory.name}.*"):
        pid = stale.name[len(directory.name) + 2:].split(".", 1)[0]
        if stale.is_dir() and pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(stale, ignore_errors=True)
            except PermissionError:
                pass


def build_tiny(base: str, seed: int):
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    offline.quiet_transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if base in TINY_BUILDERS:  # a family's tiny model (image models: workbench.vision)
            model, tokenizer = TINY_BUILDERS[base]()
            model.config.architectures = [TINY[base].architecture]
            return model.eval(), tokenizer
        tokenizer = tiny_tokenizer()
        common = dict(vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=2)
        vocab = len(tokenizer)
        if base == "tiny-llama":
            config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
                                 attn_implementation="eager", **common)
            model = LlamaForCausalLM(config)
        elif base == "tiny-gemma3":
            config = Gemma3TextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                      max_position_embeddings=256, sliding_window=8,
                                      layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                      query_pre_attn_scalar=16, attn_implementation="eager", **common)
            model = Gemma3ForCausalLM(config)
        elif base == "tiny-bert":
            config = BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                max_position_embeddings=256, attn_implementation="eager", vocab_size=vocab,
                                pad_token_id=0)
            model = BertForMaskedLM(config)
        else:  # pragma: no cover - guarded by TINY
            raise ModelNotAvailable(unknown_model_message(base))
    model.config.architectures = [TINY[base].architecture]
    return model.eval(), tokenizer


# --------------------------------------------------------------------------------------------------
# Tiny Mixture-of-Experts models (issue 19): the real OLMoE / Mixtral / Qwen2-MoE classes and TransformerLens
# adapters, so the routing probes and the expert interventions run on the adapters' own code paths.
# --------------------------------------------------------------------------------------------------

def _tiny_moe(base: str):
    def build():
        import torch  # noqa: F401  (the seeded RNG of build_tiny draws the weights)
        from transformers import (
            MixtralConfig,
            MixtralForCausalLM,
            OlmoeConfig,
            OlmoeForCausalLM,
            Qwen2MoeConfig,
            Qwen2MoeForCausalLM,
        )

        tokenizer = tiny_tokenizer()
        common = dict(vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=2, hidden_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=False, attn_implementation="eager")
        if base == "tiny-olmoe":  # 8 experts, top-2, gates not renormalised (OLMoE-1B-7B: 64, top-8, likewise)
            model = OlmoeForCausalLM(OlmoeConfig(intermediate_size=32, num_experts=8, num_experts_per_tok=2,
                                                 norm_topk_prob=False, **common))
        elif base == "tiny-mixtral":  # 4 experts, top-2, gates renormalised over the top-k (as Mixtral 8x7B)
            model = MixtralForCausalLM(MixtralConfig(intermediate_size=32, num_local_experts=4,
                                                     num_experts_per_tok=2, **common))
        else:  # tiny-qwen2-moe: 8 routed experts top-2 + an always-on shared expert with a sigmoid gate
            model = Qwen2MoeForCausalLM(Qwen2MoeConfig(intermediate_size=64, moe_intermediate_size=32,
                                                       shared_expert_intermediate_size=64, num_experts=8,
                                                       num_experts_per_tok=2, norm_topk_prob=False,
                                                       decoder_sparse_step=1, **common))
        return model, tokenizer
    return build


for _card in [
    ModelCard("tiny-olmoe", "causal-lm", "OlmoeForCausalLM", "tiny-olmoe", 0, 2, 4, 2,
              "random OLMoE (8 experts, top-2, unnormalised gates, QK-norm) built from a config", "n/a"),
    ModelCard("tiny-mixtral", "causal-lm", "MixtralForCausalLM", "tiny-mixtral", 0, 2, 4, 2,
              "random Mixtral (4 experts, top-2, renormalised gates) built from a config", "n/a"),
    ModelCard("tiny-qwen2-moe", "causal-lm", "Qwen2MoeForCausalLM", "tiny-qwen2-moe", 0, 2, 4, 2,
              "random Qwen2-MoE (8 experts, top-2, + a gated shared expert) built from a config", "n/a"),
]:
    register_tiny(_card, _tiny_moe(_card.name))
