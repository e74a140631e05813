"""`sinkbench stream`: streaming perplexity of a long text under KV-cache policies (workbench.streaming)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import add_attention_arg, add_model_arg, load_model

NAME = "stream"
SUMMARY = ("streaming perplexity of one long text under KV-cache policies: dense, window, sinks (StreamingLLM), "
           "recompute. The cache budget W includes the S sinks: `--sinks 4 --window 256` is Xiao's 4+252.")
EXAMPLE = (
    "  sinkbench stream --model smollm2-135m --policy dense window sinks recompute --window 256 \\\n"
    "      --max-tokens 4096 --json out/stream.json\n"
    "  sinkbench stream --policy sinks --sinks 0 1 2 4 8 --window 256 512 --max-tokens 8192 \\\n"
    "      --json out/xiao-table2.json          # Xiao Table 2 (S = 0 is window attention); resumable\n"
    "  sinkbench stream --policy sinks --sinks 4 --replace-sinks newline   # Xiao Table 1: 4 x \"\\n\" + 252\n"
    "  sinkbench stream --text-file book.txt --policy window sinks --exact --max-tokens 1024  # token by token\n"
    "  sinkbench stream --policy sinks window --kv-bits none 3 --kv-keep none bos --max-tokens 2048 \\\n"
    "      --json out/stream-kv3.json           # a 3-bit cache, BOS kept or not (IntactKV), vs full precision\n"
    "  sinkbench stream --policy sinks --kv-bits 2 --kv-granularity kivi --kv-group 32 --exact --max-tokens 1024\n"
    "  sinkbench stream --policy sinks window --max-tokens 1024 -i scale-sink:gamma=0.5   # an attention edit at "
    "every step")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workbench.core.corpora import CORPORA, DEFAULT_CORPUS

    add_model_arg(parser)
    add_attention_arg(parser)
    group = parser.add_argument_group("text (default: a novel of the bundled corpus)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--text-file", type=Path, help="a plain-text file, read as one stream")
    source.add_argument("--jsonl", type=Path, help='JSONL of {"text": ...} or {"tokens": [ids]} records, '
                                                   "concatenated in file order into one stream")
    group.add_argument("--corpus", default=DEFAULT_CORPUS, choices=list(CORPORA),
                       help=f"bundled corpus (default {DEFAULT_CORPUS})")
    group.add_argument("--document", default=None,
                       help="document title substring (default: Emma for austen, else the first)")
    group.add_argument("--max-tokens", type=int, default=8192,
                       help="tokens read, BOS included (default 8192; 0 = the whole text)")
    group.add_argument("--prepend-bos", action=argparse.BooleanOptionalAction, default=None,
                       help="start the stream with BOS (recorded in provenance; default: the model's policy, on for "
                            "every model but qwen2.5-0.5b)")
    group = parser.add_argument_group("policies (every combination is run)")
    group.add_argument("--policy", nargs="+", default=["sinks"], metavar="NAME",
                       help="dense, window, sinks, recompute (default sinks); dense ignores --sinks and "
                            "--window, window and recompute keep no sinks (S = 0)")
    group.add_argument("--sinks", nargs="+", type=int, default=None, metavar="S",
                       help="first tokens kept by the sinks policy (default 4); several values sweep")
    group.add_argument("--window", nargs="+", type=int, default=None, metavar="W",
                       help="cache budget W in tokens, sinks included (default 256); several values sweep")
    group.add_argument("--replace-sinks", choices=["newline"], default=None,
                       help='feed S "\\n" tokens instead of the first S tokens (Xiao Table 1)')
    group = parser.add_argument_group("evaluation")
    group.add_argument("--exact", action="store_true",
                       help="token-by-token through a real cache (the reference; about 50 ms/token on SmolLM2) "
                            "instead of the fast chunked pass")
    group.add_argument("--chunk", type=int, default=256, help="tokens per chunk on the fast path (default 256)")
    group.add_argument("--recompute-stride", type=int, default=None,
                       help="predictions per re-encoded window for recompute (default: 1 with --exact, i.e. "
                            "N x W tokens encoded; else W // 8)")
    group.add_argument("--curve-bin", type=int, default=1,
                       help="tokens per point of the NLL curve rows (default 1: every token)")
    group.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    group = parser.add_argument_group("quantised KV cache (what the cache holds, quantised at every step; "
                                      "workbench.streaming.quant)")
    group.add_argument("--kv-bits", nargs="+", default=None, metavar="B",
                       help="bits of the cached keys and values, 1..16; several values sweep, `none` is the "
                            "full-precision cache (e.g. --kv-bits none 2 3 4)")
    group.add_argument("--kv-keep", nargs="+", default=None, metavar="POLICY",
                       help="tokens kept in full precision: none (default), bos (IntactKV), first:N (KVQuant), "
                            "sinks / auto:EPS (found on the first 512 tokens), tok:X, positions; several sweep")
    group.add_argument("--kv-granularity", choices=["per-token", "per-channel", "kivi"], default="per-token",
                       help="per-token (each entry over d_head; default), per-channel (each channel over the "
                            "entries cached at that step) or kivi (keys per channel, values per token); "
                            "per-channel and kivi need --exact")
    group.add_argument("--kv-group", type=int, default=None, metavar="G",
                       help="group size: channels (per-token; a divisor of d_head) or entries (per-channel)")
    group.add_argument("--kv-rope", choices=["pre", "post"], default="pre",
                       help="quantise the keys as the streaming cache stores them, before RoPE (default; KVQuant), "
                            "or as rotated at their slot (post; what a post-RoPE cache holds; needs --exact)")
    group.add_argument("--kv-only", choices=["keys", "values"], default=None,
                       help="quantise only the keys or only the values (default both)")
    parser.add_argument("-i", "--intervention", default=None, metavar="INTERVENTION",
                        help="a catalogue attention edit applied at every step (mask-sink, scale-sink:gamma=0.5, "
                             "zero-implicit-bias, window-attention, ...; A + B composes): dense, window and sinks "
                             "then read token by token, the sink is the key at cache position 0 (bos) or the "
                             "cached tokens named by sink=; recompute applies it to each re-encoded window")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the Results here (.json/.csv); a killed sweep resumes from its journal")
    parser.set_defaults(func=execute)


def kv_quantisers(args: argparse.Namespace) -> list | None:
    """The KV quantisers the flags ask for (every --kv-bits x --kv-keep; `none` bits: full precision), or None."""
    from workbench.core.errors import InputError
    from workbench.streaming import KVCacheQuant

    if args.kv_bits is None:
        given = [flag for flag, value, default in (("--kv-keep", args.kv_keep, None),
                                                   ("--kv-granularity", args.kv_granularity, "per-token"),
                                                   ("--kv-group", args.kv_group, None), ("--kv-rope", args.kv_rope, "pre"),
                                                   ("--kv-only", args.kv_only, None)) if value != default]
        if given:
            raise InputError(f"{given[0]} sets up a quantised KV cache: add --kv-bits B (e.g. --kv-bits 4)")
        return None
    quants = []
    for bits in args.kv_bits:
        if bits.strip().lower() in ("none", "fp", "full"):
            quants.append(None)
            continue
        for keep in args.kv_keep or ["none"]:
            quants.append(KVCacheQuant(bits=bits, keep=keep, granularity=args.kv_granularity, group=args.kv_group,
                                       rope=args.kv_rope, keys=args.kv_only != "values",
                                       values=args.kv_only != "keys"))
    return list(dict.fromkeys(quants))


def execute(args: argparse.Namespace) -> int:
    from workbench import streaming
    from workbench.core.data import describe
    from workbench.core.results import check_output_path
    from workbench.streaming.run import check_quantisable

    policies = streaming.policy_grid(args.policy, args.sinks, args.window, args.replace_sinks)
    intervention = None
    if args.intervention is not None:  # a malformed spec answers before the model loads
        from workbench.streaming.hooks import as_intervention

        intervention = as_intervention(args.intervention)
    kv_quant = kv_quantisers(args)
    for policy in policies:  # what needs no model: a cache to quantise, a quantiser the path runs exactly
        for quant in kv_quant or []:
            if quant is not None:
                check_quantisable(policy, quant, fast=not args.exact)
    if args.json is not None:
        check_output_path(args.json)  # a bad output path fails before the model loads
    model = load_model(args)
    text = streaming.long_text(model, text_file=args.text_file, jsonl=args.jsonl, corpus=args.corpus,
                               document=args.document, max_tokens=args.max_tokens or None,
                               prepend_bos=args.prepend_bos)
    print(describe(text))
    results = streaming.stream_policies(model, text, policies, fast=not args.exact, chunk=args.chunk,
                                        recompute_stride=args.recompute_stride, curve_bin=args.curve_bin,
                                        seed=args.seed, out=args.json, log=print, kv_quant=kv_quant,
                                        intervention=intervention, attention_block=args.attention_block)
    if args.json is not None:
        print(f"wrote {len(results)} rows to {args.json}")
    return 0
