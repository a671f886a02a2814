"""`mirage wan`: helpers for the Wan2.2-TI2V-5B backbone.

``mirage wan tiny-random --out DIR`` writes a tiny randomly initialised directory in the
Wan2.2 diffusers layout (transformer/, vae/, scheduler/, optionally text_encoder/ + tokenizer/),
for smoke runs of ``mirage generate --backbone wan22 --weights DIR`` without real weights.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("wan", help="Wan2.2-TI2V-5B backbone helpers")
    wsub = p.add_subparsers(dest="wan_command", metavar="COMMAND")
    wsub.required = True
    t = wsub.add_parser("tiny-random", help="write a tiny random Wan2.2-layout weights directory")
    t.add_argument("--out", required=True, metavar="DIR")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--text-encoder", action="store_true", help="also a tiny umT5 text_encoder/ + tokenizer/")
    t.set_defaults(func=run_tiny_random)


def run_tiny_random(args) -> int:
    from mirage.extras import require_extra

    require_extra("wan", ("diffusers",) + (("transformers",) if args.text_encoder else ()), "`mirage wan tiny-random`")
    from mirage.backbones.wan22.testing import save_tiny_wan

    path = save_tiny_wan(args.out, seed=args.seed, text_encoder=args.text_encoder)
    print(f"wrote a tiny random Wan2.2 directory to {path} (use: mirage generate --backbone wan22 "
          f"--weights {path} --size 64x64)")
    return 0
