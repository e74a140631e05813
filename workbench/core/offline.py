"""Keep the Hugging Face stack off the network unless the user asks for it.

`huggingface_hub` reads HF_HUB_OFFLINE when it is first imported; set later, a by-name load retries for
about 23 s, and against an unanswering endpoint it hangs. So this module runs before anything imports
`transformers` (workbench/__init__.py imports it first). Set SINKBENCH_ONLINE=1 to allow hub downloads.
"""

import os

ONLINE = os.environ.get("SINKBENCH_ONLINE", "") == "1"

if not ONLINE:
    for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def quiet_transformers() -> None:
    """Silence load-time chatter (progress bars, 'weights not initialised') that hides our own messages."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
