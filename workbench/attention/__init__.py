"""The one attention path, full or blockwise: can every hook see attention at T = 8k-32k in linear memory?

    >>> with attention.blockwise(model, block=64):          # queries in blocks of 64 rows
    ...     logits = model(tokens)                          # hook_pattern fires per block: [b, h, 64, T]
    >>> attention.current_block()                           # inside a hook: QueryBlock(start=64, stop=128, n_queries=T)

Every hooked pass of TransformerLens's bridge materialises the whole [batch, head, T, T] score matrix
(`PositionEmbeddingsAttentionBridge.forward`), and transformers adds a T x T mask: 2.4 GB per layer for
SmolLM2 at T = 8192. Rows of a softmax are independent, so nothing needs them all at once. Inside
`blockwise` the attention modules run the workbench's own forward: queries in blocks of B rows, each
block's scores against the keys it can see (the other keys hold the dtype's minimum, as on the full path,
so the block's tensors are [batch, head, B, K] with key j at position j), an exact softmax per row, then
`hook_attn_scores`, `hook_pattern`, `hook_z` ([batch, B, head, d_head]) and the output projection of that
block. `hook_q/k/v` (and `hook_rot_q/k`) fire once on every position before the first block, `hook_out`
once after the last (`BLOCK_SUFFIXES` lists the hooks that fire per block). Row-wise edits and pattern
readers work unchanged apart from placing their rows at the block's offset; weight a hook moves onto a key
the mask hid still counts, as on the full path.

No pattern where none is read: inside `blockwise`, a Llama / Qwen2 / Gemma 3 layer on whose `hook_attn_scores`
and `hook_pattern` nothing is registered runs one fused kernel (torch's flash attention: memory linear in T,
no [B, K] block at all; `hook_z` fires once on every query) where its mask is the plain causal one (Gemma's
sliding-window layers, padding, a cache, softcapping or a caller's 4D mask keep the blocks). A hook that
reads only the attention on a few keys (the sink's share, sum_{j in S} A[q, j]: `probes.sinks`,
`sink_by_position` through `passes.probe_pass` with `KEY_MASS`; the weights A[q, S] a value edit's restore
term needs) is a `KeyReader` on hook_pattern; `passes.forward` hands it to the layer on a blockwise pass
(`reading_keys`), and the fused path computes it from the kernel's row logsumexp and the scores of those
columns only, exp(q.k_j * scale - lse_q); the explicit blocks from the block's pattern after its hooks (an
intervention's edit included). `blockwise(..., fuse=False)` keeps the explicit blocks everywhere; `n_fused` counts the
fused calls (what it saves: bench/long_context.py, README "Long context").

Where the block is: `current_block()` returns the `QueryBlock` (start, stop, n_queries) whose hooks are
running, or None outside a blockwise forward (the full path: one block with every query; `block_of(T)`
returns either). Query i of a block sits at position start + i (after a cache's keys, if any).

The seam: `blockwise(model, block=None, budget=None)`, a context manager. It sets `forward` on each
attention module (an instance attribute, removed on exit; nothing in transformers or TransformerLens is
patched) and, on bridged models, hands the HF model a zero-byte 4D mask so that transformers builds no
T x T mask (causal, sliding-window and padding masks are rebuilt per block from positions). `block=None`
sizes blocks from the budget (64 MB of live tensors per block at most). Around it:
- `plan(model, batch, T, block)`: None (the default: the full path, bit-identical to TransformerLens's,
  while its pattern fits the budget; blockwise otherwise), "full" (refused before the pass, naming the
  estimate and the block option, when it would not fit) or B; `path(model, inputs)` applies it to one pass;
- `policy(model, block)`: what `--attention-block B|full|auto` / `attention_block=` mean for every pass in
  its context (`policy(None, block)`: for every model of the context, as the CLI sets it per command);
  `parse_block` is the rule for the value (B >= 1, "full", "auto"), `require_full` refuses blockwise for a
  computation that needs whole patterns (attribution patching's gradients);
- the budget: `budget=`, else $SINKBENCH_ATTENTION_BUDGET (512M, 4G, ...), else 1 GiB per layer.

Families (anything else is refused before anything is installed, with an error naming it):
- Llama / SmolLM2, Qwen2, Gemma 3 (`PositionEmbeddingsAttentionBridge`): q/k/v through the bridge's
  projections (Qwen2's biases), Gemma's q/k norms, RoPE, GQA, softcapping, the sliding window of Gemma's
  local layers (key k visible to query q iff q - W < k <= q); `hook_attn_scores` pre-softmax, as on the
  full path.
- BERT (`AttentionBridge` over `BertAttention`) and ViT / DeiT (over `ViTAttention`): the full path runs
  HF's module and fires `hook_pattern` / `hook_attn_scores` post hoc (edits discarded, scores = the
  post-softmax weights). Here the workbench computes them, so inside `blockwise` these models fire
  `hook_attn_scores` pre-softmax and edits of `hook_pattern` flow into the output.
- The toy (`workbench.toy.model.Attention`, recognised by its fields): every variant; `hook_sink` and
  `hook_gate` fire per block too.

Rooms: `plan` (QueryBlock, the budget, the plan, Blockwise: the state of an installation), `blocks` (the explicit
path's masks and block loop), `keys` (KeyReader and the fused path), `families` (the block forward of each
attention family), `seam` (`blockwise`, which module gets which forward; `policy`, `path`). Each imports only
those before it in that list, and the ground floor (workbench.core).
"""

from workbench.attention.keys import KEY_MASS, KeyReader, reading_keys
from workbench.attention.plan import (
    BLOCK_BYTES,
    BLOCK_OPTION,
    BLOCK_SUFFIXES,
    BUDGET_ENV,
    DEFAULT_BUDGET,
    Blockwise,
    QueryBlock,
    auto_block,
    block_of,
    budget_bytes,
    check_block,
    check_length,
    current_block,
    full_pattern_bytes,
    parse_block,
    parse_bytes,
    plan,
)
from workbench.attention.seam import (
    active,
    attention_components,
    blockwise,
    path,
    policy,
    require_full,
    runs_blockwise,
)

__all__ = ["BLOCK_BYTES", "BLOCK_OPTION", "BLOCK_SUFFIXES", "BUDGET_ENV", "DEFAULT_BUDGET", "KEY_MASS", "Blockwise",
           "KeyReader", "QueryBlock", "active", "attention_components", "auto_block", "block_of", "blockwise",
           "budget_bytes", "check_block", "check_length", "current_block", "full_pattern_bytes", "parse_block",
           "parse_bytes", "path", "plan", "policy", "reading_keys", "require_full", "runs_blockwise"]
