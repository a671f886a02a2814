"""`mirage world ...` (placeholder until the procedural world lands)."""


def add_parser(sub) -> None:
    p = sub.add_parser("world", help="procedural 3D world (not built yet)")
    p.set_defaults(func=lambda args: 0)
