"""Generate ssgan_fast/_constants.py from csrc/common/shared.h (the one source of the ops' constants).

    python tools/gen_constants.py           # rewrite the module
    python tools/gen_constants.py --check   # exit 1 if the module is stale (tests/ops/test_constants.py)
"""
from __future__ import annotations

import ast
import operator
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "csrc" / "common" / "shared.h"
MODULE = ROOT / "ssgan_fast" / "_constants.py"
LINE = re.compile(r"^SSGAN_CONST\((double|int64_t),\s*([A-Z_0-9]+),\s*(.+)\)\s*$")
_OPS = {ast.LShift: operator.lshift, ast.Mult: operator.mul}


def _value(expr: str):
    """A constant expression of the header: a literal, int64_t{n}, and << / * of those."""
    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"{HEADER.name}: cannot read the constant expression {expr!r}")
    return ev(ast.parse(re.sub(r"int64_t\{(\d+)\}", r"\1", expr), mode="eval").body)


def read_header(text: str | None = None) -> dict:
    """{NAME: (C type, value)} of every SSGAN_CONST line, with the comment line above it."""
    lines = (text if text is not None else HEADER.read_text()).splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = LINE.match(line.strip())
        if m:
            ctype, name, expr = m.groups()
            above = lines[i - 1].strip() if i else ""
            comment = above.removeprefix("//").strip() if above.startswith("//") else ""
            v = _value(expr)
            out[name] = (ctype, float(v) if ctype == "double" else int(v), comment)
    if not out:
        raise ValueError(f"{HEADER}: no SSGAN_CONST lines")
    return out


def render(consts: dict) -> str:
    body = ['"""The ops\' scalar constants. GENERATED from csrc/common/shared.h by tools/gen_constants.py: '
            'edit the header."""', ""]
    for name, (_, v, comment) in consts.items():
        if comment:
            body.append(f"# {comment}")
        body.append(f"{name} = {v!r}")
    body += ["", "__all__ = ["] + [f"    {n!r}," for n in consts] + ["]", ""]
    return "\n".join(body)


def main(argv: list[str]) -> int:
    text = render(read_header())
    if "--check" in argv:
        if not MODULE.is_file() or MODULE.read_text() != text:
            print(f"{MODULE} is stale: run python tools/gen_constants.py", file=sys.stderr)
            return 1
        return 0
    MODULE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
