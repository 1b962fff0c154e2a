"""Fail if any import cycle exists among the modules of ``sipp``.

Every import counts, also those inside functions (a lazy import does not remove a cycle,
it only hides it); imports under ``if TYPE_CHECKING:`` do not, since they never run.
Prints each cycle (a strongly connected group of modules) with one import chain through it.

    python scripts/check_import_cycles.py [package]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

import grimp


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Groups of two or more modules that import each other, directly or not (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def main(package: str = "sipp") -> int:
    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    groups = strongly_connected(edges)
    for group in groups:
        members = set(group)
        print(f"import cycle among {len(group)} modules:")
        for module in group:
            for target in sorted(edges[module] & members):
                details = graph.get_import_details(importer=module, imported=target)
                lines = ", ".join(str(d["line_number"]) for d in details)
                print(f"  {module} -> {target} (line {lines})")
    if not groups:
        print(f"no import cycles in {package} ({len(edges)} modules)")
    return 1 if groups else 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
