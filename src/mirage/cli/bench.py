"""`mirage bench ...` (placeholder until the memory benchmark lands)."""


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (not built yet)")
    p.set_defaults(func=lambda args: 0)
