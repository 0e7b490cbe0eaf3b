"""The longest functions of the package and the app, by line span (nested functions counted on their own too):
issue 15's "longest functions before / after".

    python scripts/longest_functions.py 15
"""

from __future__ import annotations

import ast
import pathlib
import sys


def main() -> None:
    rows = []
    files = sorted(pathlib.Path("dlfd_core").glob("**/*.py")) + [pathlib.Path("app.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    rows.sort(reverse=True)
    for lines, where in rows[: int(sys.argv[1]) if len(sys.argv) > 1 else 15]:
        print(lines, where)


if __name__ == "__main__":
    main()
