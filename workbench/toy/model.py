"""A small causal transformer whose attention can be swapped for the sink mitigations of the literature.

    >>> model = ToyTransformer(ToyConfig(attention="sink-logit", d_vocab=67, n_ctx=128))
    >>> logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))

One readable file, top to bottom, in the spirit of nanoGPT's `model.py`: embeddings, a pre-LayerNorm
block (attention + ReLU MLP), a final LayerNorm and an unembedding. Every intermediate passes through a
TransformerLens `HookPoint` with TransformerLens's name and shape, so the workbench's probes and
interventions run on it exactly as on a `TransformerBridge`:

    hook_embed, hook_pos_embed                      [batch, pos, d_model]
    blocks.{l}.hook_resid_pre / _mid / _post        [batch, pos, d_model]
    blocks.{l}.ln1.hook_scale, ln1.hook_normalized  (ln2 and ln_final likewise)
    blocks.{l}.attn.hook_q / hook_k / hook_v        [batch, pos, head, d_head]  (no GQA: n_kv_heads == n_heads)
    blocks.{l}.attn.hook_rot_q / hook_rot_k         [batch, pos, head, d_head]  (rotary models only)
    blocks.{l}.attn.hook_attn_scores                [batch, head, q, k]  QK^T/sqrt(d_head), causal mask = -inf
    blocks.{l}.attn.hook_pattern                    [batch, head, q, k]  the weights multiplied with V
    blocks.{l}.attn.hook_sink                       [batch, head, q]     weight of the extra key slot
                                                                         (softmax1, sink-logit, kv-bias only)
    blocks.{l}.attn.hook_gate                       [batch, pos, head, d_head]  (gated only; d_head -> 1 if headwise)
    blocks.{l}.attn.hook_z                          [batch, pos, head, d_head]  what W_O reads
    blocks.{l}.hook_attn_out, hook_mlp_out          [batch, pos, d_model]
    blocks.{l}.mlp.hook_pre / hook_post             [batch, pos, d_mlp]       (dense MLP)

With `n_experts > 0` the MLP is a Mixture of Experts (`MoE`: a linear router, softmax, top-k, E ReLU
experts; Shazeer et al. 2017, Fedus et al. 2021's load-balancing loss), hooked with TransformerLens 4.3's
MoE names (its MoEBridge / MoERouterBridge on OLMoE, Mixtral, Qwen2-MoE) and the same edit contract:

    blocks.{l}.mlp.hook_in / hook_out               [batch, pos, d_model]     the block's input / output
    blocks.{l}.mlp.gate.hook_out                    [tokens, n_experts]       router logits (tokens = batch * pos)
    blocks.{l}.mlp.hook_expert_weights              [tokens, n_experts]       gates, 0 outside the top-k; an edit
                                                                              re-derives the top-k from it, values
                                                                              used as they are
    blocks.{l}.mlp.hook_expert_indices              [tokens, top_k]           the experts each token is sent to
    blocks.{l}.mlp.hook_expert_out                  [tokens, n_experts, d_model]  every expert's (ungated) output
                                                                              (no TransformerLens equivalent: its
                                                                              batched experts have no per-expert hook)

The attention variants (`VARIANTS`), side by side in `Attention.weights`; S = QK^T/sqrt(d_head) + causal mask:
- `softmax`     softmax(S)                                              the baseline
- `softmax1`    exp(S_k) / (1 + sum_j exp(S_j))                         Miller 2023 "off by one"; = an extra key
                                                                        with logit 0 and value 0
- `sigmoid`     sigmoid(S), no normaliser                               Gu et al. 2025, Table 6
- `relu`        relu(S) / (t + 1) for query position t                  Guo et al. 2024 (their code divides row t
                                                                        by the number of visible keys)
- `gated`       softmax(S), then z <- z * sigmoid(x W_G + b_G)          Qiu et al. 2025, G1: query-dependent,
                                                                        head-specific, elementwise (or headwise)
- `sink-logit`  softmax([S, s_h]) without its last column               gpt-oss: a learned logit s_h per head
- `kv-bias`     softmax([S, q.k*_h/sqrt(d_head)]) without its last col  Gu et al. 2025, Table 4 "K biases, v* = 0"
                                                                        (Sun et al. 2024's k', v' with v' fixed at 0)
For the last three the extra slot's value is zero, so it adds nothing to z: `hook_pattern` shows the
weights over the real keys only (rows sum to less than 1, like gpt-oss), and `hook_sink` the weight the
slot took. Editing `hook_pattern` changes the output; the slot's weight is not renormalised into it.

Positions are learned absolute embeddings by default, as in Guo et al.'s Bigram-Backcopy model; rotary
(`positional="rotary"`, GPT-NeoX rotate-half on the whole head) is there to test that choice (Gu et al.
2025, Table 3: sinks appear under every positional encoding). Parameters are stored in TransformerLens's
layout (`W_Q [head, d_model, d_head]`, `W_O [head, d_head, d_model]`, ...); there are no linear biases
(`b_V = b_O = None`), as in Guo et al.'s model. Initialisation follows PyTorch's defaults, which is what
Guo et al.'s model gets: embeddings N(0, 1), weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from workbench.core.errors import InputError, check_number
from workbench.toy.presets import GATES, POSITIONAL, VARIANTS, Variant, check_variant  # noqa: F401 (re-exported)


@dataclasses.dataclass
class ToyConfig:
    """The architecture (field names follow TransformerLens's `cfg` where one exists)."""

    attention: str = "softmax"
    d_vocab: int = 67
    n_ctx: int = 64
    d_model: int = 256
    n_layers: int = 1
    n_heads: int = 1
    d_mlp: int = 0  # 0: 4 * d_model
    positional: str = "absolute"
    gate: str = "elementwise"  # gated only: one gate per (head, channel), or one per head
    rotary_base: float = 10000.0
    eps: float = 1e-5
    n_experts: int = 0  # > 0: every MLP is a Mixture of Experts (d_mlp is then each expert's width)
    top_k: int = 2  # experts per token (MoE only)

    def __post_init__(self) -> None:
        check_variant(self.attention)
        if self.positional not in POSITIONAL:
            raise InputError(f"unknown positional encoding {self.positional!r}: available {', '.join(POSITIONAL)}")
        if self.gate not in GATES:
            raise InputError(f"unknown gate {self.gate!r}: available {', '.join(GATES)}")
        for what, value, low in (("d_vocab", self.d_vocab, 2), ("n_ctx", self.n_ctx, 2), ("d_model", self.d_model, 1),
                                 ("n_layers", self.n_layers, 1), ("n_heads", self.n_heads, 1), ("d_mlp", self.d_mlp, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{what} must be an integer >= {low}, got {value!r}")
        check_number("rotary_base", self.rotary_base, low=1.0, low_open=True)
        check_number("eps", self.eps, low=0.0, low_open=True)
        if self.d_model % self.n_heads:
            raise InputError(f"d_model = {self.d_model} is not divisible by n_heads = {self.n_heads}")
        if self.positional == "rotary" and self.d_head % 2:
            raise InputError(f"rotary positions need an even d_head, got {self.d_head}")
        if self.d_mlp == 0:
            self.d_mlp = 4 * self.d_model
        for what, value in (("n_experts", self.n_experts), ("top_k", self.top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{what} must be a non-negative integer, got {value!r}")
        if self.n_experts and not 1 <= self.top_k <= self.n_experts:
            raise InputError(f"top_k = {self.top_k} is out of range for {self.n_experts} experts: allowed "
                             f"1..{self.n_experts}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_key_value_heads(self) -> int:
        return self.n_heads

    @property
    def variant(self) -> Variant:
        return VARIANTS[self.attention]

    def to_dict(self) -> dict:
        """The fields; a dense toy omits the MoE ones, so its identity and checkpoints are those of before MoE."""
        out = dataclasses.asdict(self)
        if not self.n_experts:
            out.pop("n_experts")
            out.pop("top_k")
        return out


def _uniform_(weight: Tensor, fan_in: int) -> Tensor:
    """PyTorch's default nn.Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in)
    return nn.init.uniform_(weight, -bound, bound)


class LayerNorm(nn.Module):
    """LayerNorm with TransformerLens's hooks: hook_scale (the std) and hook_normalized (the output)."""

    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d_model) -> (B, T, d_model)
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.w + self.b)


def rotate(x: Tensor, base: float) -> Tensor:  # (B, T, nh, hs) -> (B, T, nh, hs)
    """Rotary position embedding (Su et al. 2021), GPT-NeoX's rotate-half convention."""
    T, d = x.shape[1], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)  # (d/2,)
    angles = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv_freq  # (T, d/2)
    cos = torch.cat([angles.cos(), angles.cos()], -1)[None, :, None, :].to(x.dtype)  # (1, T, 1, d)
    sin = torch.cat([angles.sin(), angles.sin()], -1)[None, :, None, :].to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Attention(nn.Module):
    """Multi-head causal self-attention; `weights` holds the variants side by side."""

    b_V = None  # no linear biases (Guo et al.'s model has none); here so that code reading b_V/b_O finds None
    b_O = None

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.variant = cfg.attention
        H, D, E = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(_uniform_(torch.empty(H, D, E), D))
        self.W_K = nn.Parameter(_uniform_(torch.empty(H, D, E), D))
        self.W_V = nn.Parameter(_uniform_(torch.empty(H, D, E), D))
        self.W_O = nn.Parameter(_uniform_(torch.empty(H, E, D), H * E))
        if self.variant == "gated":
            self.hook_gate = HookPoint()  # [batch, pos, head, d_head or 1]
        if cfg.variant.extra_slot:
            self.hook_sink = HookPoint()  # [batch, head, q]
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        if cfg.positional == "rotary":
            self.hook_rot_q = HookPoint()
            self.hook_rot_k = HookPoint()
        self.hook_attn_scores = HookPoint()  # [batch, head, q, k]
        self.hook_pattern = HookPoint()  # [batch, head, q, k]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]

    def add_variant_parameters(self) -> None:
        """The variant's own parameters; created after every shared one, so that one seed gives every variant
        the same initial embeddings, Q/K/V/O and MLP weights."""
        H, D, E = self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head
        if self.variant == "gated":  # Qiu et al. 2025: gate computed from the block's normalised input
            width = E if self.cfg.gate == "elementwise" else 1
            self.W_G = nn.Parameter(_uniform_(torch.empty(H, D, width), D))
            self.b_G = nn.Parameter(torch.zeros(H, width))
        if self.variant == "sink-logit":  # gpt-oss: one learned logit per head, initialised at 0 (= softmax1)
            self.sink_logit = nn.Parameter(torch.zeros(H))
        if self.variant == "kv-bias":  # Gu et al. Table 4: a learned key per head; its value is fixed at 0
            self.k_bias = nn.Parameter(_uniform_(torch.empty(H, E), E))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d_model) -> (B, T, d_model)
        B, T, _ = x.shape
        q = self.hook_q(torch.einsum("btd,hde->bthe", x, self.W_Q))  # (B, T, nh, hs)
        k = self.hook_k(torch.einsum("btd,hde->bthe", x, self.W_K))  # (B, T, nh, hs)
        v = self.hook_v(torch.einsum("btd,hde->bthe", x, self.W_V))  # (B, T, nh, hs)
        if self.cfg.positional == "rotary":
            q = self.hook_rot_q(rotate(q, self.cfg.rotary_base))
            k = self.hook_rot_k(rotate(k, self.cfg.rotary_base))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.cfg.d_head)  # (B, nh, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = self.hook_attn_scores(scores.masked_fill(~causal, float("-inf")))
        pattern = self.hook_pattern(self.weights(scores, q))  # (B, nh, T, T)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)  # (B, T, nh, hs)
        if self.variant == "gated":
            gate = torch.sigmoid(torch.einsum("btd,hdg->bthg", x, self.W_G) + self.b_G)  # (B, T, nh, hs or 1)
            z = z * self.hook_gate(gate)
        z = self.hook_z(z)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O)  # (B, T, d_model)

    def weights(self, scores: Float[Tensor, "batch head q k"],  # noqa: F722
                q: Float[Tensor, "batch q head d_head"]) -> Float[Tensor, "batch head q k"]:  # noqa: F722
        """The attention weights of each variant from the masked scores S (masked entries are -inf)."""
        variant = self.variant
        if variant in ("softmax", "gated"):
            return scores.softmax(-1)
        if variant == "sigmoid":  # no normaliser: a head can attend to nothing (Gu et al. 2025, Table 6)
            return torch.sigmoid(scores)
        if variant == "relu":  # row t divided by its t + 1 visible keys, as in Guo et al.'s code
            visible = torch.arange(1, scores.shape[-1] + 1, device=scores.device, dtype=scores.dtype)
            return F.relu(scores) / visible[:, None]
        # The extra-slot variants: one more key whose value is 0, so it only absorbs weight.
        B, H, T, _ = scores.shape
        if variant == "softmax1":  # logit 0 (Miller 2023)
            extra = scores.new_zeros(B, H, T, 1)
        elif variant == "sink-logit":  # a learned logit per head (gpt-oss)
            extra = self.sink_logit.view(1, H, 1, 1).expand(B, H, T, 1)
        else:  # kv-bias: a learned key per head, so the logit depends on the query (Gu et al. Table 4)
            extra = torch.einsum("bqhe,he->bhq", q, self.k_bias)[..., None] / math.sqrt(self.cfg.d_head)
        full = torch.cat([scores, extra], -1).softmax(-1)  # (B, nh, T, T + 1)
        self.hook_sink(full[..., -1])
        return full[..., :-1]


class MLP(nn.Module):
    """w_out(relu(w_in x)), no biases (Guo et al.'s FeedForward)."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.W_in = nn.Parameter(_uniform_(torch.empty(cfg.d_model, cfg.d_mlp), cfg.d_model))
        self.W_out = nn.Parameter(_uniform_(torch.empty(cfg.d_mlp, cfg.d_model), cfg.d_mlp))
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d_model) -> (B, T, d_model)
        post = self.hook_post(F.relu(self.hook_pre(x @ self.W_in)))
        return post @ self.W_out


class Router(nn.Module):
    """The MoE router: logits x W_gate [tokens, n_experts] (TransformerLens's `mlp.gate.hook_out`)."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.W_gate = nn.Parameter(_uniform_(torch.empty(cfg.d_model, cfg.n_experts), cfg.d_model))
        self.hook_in = HookPoint()  # [tokens, d_model]
        self.hook_out = HookPoint()  # [tokens, n_experts]

    def forward(self, x: Tensor) -> Tensor:  # (N, d_model) -> (N, E)
        return self.hook_out(self.hook_in(x) @ self.W_gate)


class MoE(nn.Module):
    """Top-k Mixture of Experts: out = sum over the token's top-k experts e of g_e * W_out_e relu(W_in_e x), with
    g = softmax(router logits) restricted to the top-k (not renormalised, as OLMoE). `aux_loss` holds the last
    forward's load-balancing loss, E * sum_e f_e P_e (Fedus et al. 2021, eq. 4: f_e the share of routed slots, P_e
    the mean router probability), which training adds with `router_aux_coef`."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        E, D, M = cfg.n_experts, cfg.d_model, cfg.d_mlp
        self.gate = Router(cfg)
        self.W_in = nn.Parameter(_uniform_(torch.empty(E, D, M), D))
        self.W_out = nn.Parameter(_uniform_(torch.empty(E, M, D), M))
        self.hook_in = HookPoint()  # [batch, pos, d_model]
        self.hook_expert_weights = HookPoint()  # [tokens, E]
        self.hook_expert_indices = HookPoint()  # [tokens, top_k]
        self.hook_expert_out = HookPoint()  # [tokens, E, d_model]
        self.hook_out = HookPoint()  # [batch, pos, d_model]
        self.aux_loss: Tensor | None = None

    def expert(self, x: Tensor, index: int) -> Tensor:  # (N, d_model) -> (N, d_model): one expert, ungated
        return F.relu(x @ self.W_in[index]) @ self.W_out[index]

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d_model) -> (B, T, d_model)
        B, T, D = x.shape
        flat = self.hook_in(x).reshape(B * T, D)  # (N, D)
        probs = self.gate(flat).softmax(-1)  # (N, E)
        top, indices = probs.topk(self.cfg.top_k, dim=-1)  # (N, k)
        dense = torch.zeros_like(probs).scatter(-1, indices, top)
        weights = self.hook_expert_weights(dense)
        if weights is not dense and not torch.equal(weights, dense):  # an edit: re-select, as MoERouterBridge does
            indices = weights.topk(self.cfg.top_k, dim=-1).indices
        indices = self.hook_expert_indices(indices)
        gates = weights.gather(-1, indices)  # (N, k)
        hidden = F.relu(torch.einsum("nd,edm->nem", flat, self.W_in))  # (N, E, M): every expert (the toy is small)
        outputs = self.hook_expert_out(torch.einsum("nem,emd->ned", hidden, self.W_out))  # (N, E, D)
        chosen = outputs.gather(1, indices[..., None].expand(-1, -1, D))  # (N, k, D)
        routed = F.one_hot(indices, self.cfg.n_experts).sum(1).float()  # (N, E)
        self.aux_loss = self.cfg.n_experts * (routed.mean(0) / self.cfg.top_k * probs.mean(0)).sum()
        return self.hook_out((gates[..., None] * chosen).sum(1).reshape(B, T, D))


class Block(nn.Module):
    """Pre-LayerNorm block: resid_mid = resid_pre + attn(ln1(resid_pre)); resid_post = resid_mid + mlp(ln2(.))."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, cfg.eps)
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg.d_model, cfg.eps)
        self.mlp = MoE(cfg) if cfg.n_experts else MLP(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: Tensor) -> Tensor:  # (B, T, d_model) -> (B, T, d_model)
        resid = self.hook_resid_pre(resid)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(self.ln1(resid))))
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(self.ln2(resid))))


class ToyTransformer(HookedRootModule):
    """The toy model: tokens [batch, pos] -> logits [batch, pos, d_vocab], hooked like TransformerLens.

        >>> model = ToyTransformer(ToyConfig(attention="relu", d_vocab=67, n_ctx=64))
        >>> model(torch.zeros(2, 64, dtype=torch.long)).shape      # torch.Size([2, 64, 67])

    `variant` names the attention variant (see `VARIANTS`); `sinkbench` (its `workbench.core.modelinfo.ModelInfo`)
    and `tokenizer` are attached by `workbench.toy.load_toy` and by training.
    """

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.variant = cfg.attention
        self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, cfg.d_model))  # N(0, 1), like nn.Embedding
        if cfg.positional == "absolute":
            self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, cfg.d_model))
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg.d_model, cfg.eps)
        self.W_U = nn.Parameter(_uniform_(torch.empty(cfg.d_model, cfg.d_vocab), cfg.d_model))
        for block in self.blocks:
            block.attn.add_variant_parameters()
        self.sinkbench = None
        self.tokenizer = None
        self.setup()

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:  # noqa: F722
        if tokens.ndim != 2:
            raise InputError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.cfg.n_ctx:
            raise InputError(f"{T} tokens exceed the toy's context: allowed 1..{self.cfg.n_ctx}")
        resid = self.hook_embed(F.embedding(tokens, self.W_E))  # (B, T, d_model)
        if self.cfg.positional == "absolute":
            resid = resid + self.hook_pos_embed(self.W_pos[:T].expand_as(resid))
        for block in self.blocks:
            resid = block(resid)
        return self.ln_final(resid) @ self.W_U  # (B, T, d_vocab)

    @property
    def W_Q(self) -> Tensor:  # [layer, head, d_model, d_head], as on a HookedTransformer
        return torch.stack([b.attn.W_Q for b in self.blocks])

    @property
    def W_K(self) -> Tensor:
        return torch.stack([b.attn.W_K for b in self.blocks])

    @property
    def W_V(self) -> Tensor:
        return torch.stack([b.attn.W_V for b in self.blocks])

    @property
    def W_O(self) -> Tensor:  # [layer, head, d_head, d_model]
        return torch.stack([b.attn.W_O for b in self.blocks])

    def __repr__(self) -> str:
        c = self.cfg
        return (f"ToyTransformer(attention={c.attention!r}, layers={c.n_layers}, heads={c.n_heads}, "
                f"d_model={c.d_model}, n_ctx={c.n_ctx}, vocab={c.d_vocab}, positional={c.positional!r}"
                + (f", experts={c.n_experts}, top_k={c.top_k})" if c.n_experts else ")"))
