#!/usr/bin/env python3
"""The arrows of frugal's data flow, checked (CI runs this from .ci/run).

1. Crates: each crate may depend only on the frugal crates listed for it below (the compiler
   already forbids crate cycles; this forbids upward arrows, e.g. the formats crate importing
   the model crate). Read from each crate's Cargo.toml.
2. Modules: inside each crate, the top-level modules' references to one another
   (`crate::m`, or `super::m` from a file directly under src/) must form no cycle.

Prints the graph it checked and exits non-zero naming the first violation.

    python3 scripts/check_arrows.py
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Which frugal crates each crate may depend on: the arrows, bottom to top.
ALLOWED = {
    "frugal-tensor": set(),
    "frugal-quant": {"frugal-tensor"},
    "frugal-kernels": {"frugal-tensor", "frugal-quant"},
    "frugal-formats": {"frugal-tensor"},
    "frugal-tokenizer": {"frugal-formats"},
    "frugal-model": {"frugal-tensor", "frugal-quant", "frugal-kernels", "frugal-formats"},
    "frugal-engine": {
        "frugal-tensor", "frugal-quant", "frugal-kernels", "frugal-formats",
        "frugal-tokenizer", "frugal-model",
    },
    "frugal-cli": {
        "frugal-tensor", "frugal-quant", "frugal-kernels", "frugal-formats",
        "frugal-tokenizer", "frugal-model", "frugal-engine",
    },
}


def deps(cargo: pathlib.Path) -> tuple[str, set[str]]:
    """The package name and its frugal-* dependencies (any section but dev-dependencies)."""
    name, section, out = None, None, set()
    for line in cargo.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
            continue
        m = re.match(r'name\s*=\s*"([^"]+)"', line)
        if section == "package" and m:
            name = m.group(1)
        m = re.match(r"(frugal-[a-z]+)\b", line)
        if m and section == "dependencies":
            out.add(m.group(1))
    return name, out


def code(path: pathlib.Path) -> str:
    """The file without comments (doc links are not imports)."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    return "\n".join(l.split("//")[0] if "//" in l and '"' not in l else l
                     for l in text.splitlines() if not l.lstrip().startswith("//"))


def reexports(src: pathlib.Path, mods: set[str]) -> dict[str, str]:
    """Names the crate root re-exports from its own modules (`pub use m::{A, B}`), by name:
    a file reaching `crate::A` depends on `m`."""
    out = {}
    for lib in (src / "lib.rs", src / "main.rs"):
        if not lib.exists():
            continue
        for m, names in re.findall(r"\buse\s+(?:crate::|self::)?([a-z_][a-z0-9_]*)::\{?([^;]*?)\}?;",
                                    code(lib)):
            if m in mods:
                for n in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", names):
                    out[n] = m
    return out


def module_graph(src: pathlib.Path) -> dict[str, set[str]]:
    """Top-level module -> the top-level modules its files reference (directly, or through an
    item the crate root re-exports)."""
    mods = {p.stem for p in src.glob("*.rs") if p.stem not in ("lib", "main")}
    mods |= {p.name for p in src.iterdir() if p.is_dir()}
    names = reexports(src, mods)
    graph = {m: set() for m in mods}
    for m in mods:
        files = [src / f"{m}.rs"] if (src / f"{m}.rs").exists() else []
        if (src / m).is_dir():
            files += sorted((src / m).rglob("*.rs"))
        for f in files:
            text = code(f)
            paths = re.findall(r"\bcrate::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)", text)
            if f.parent == src:  # a file directly under src/: super:: is the crate root
                paths += re.findall(r"\bsuper::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)", text)
            refs = set()
            for p in paths:
                for n in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", p)[: None if p.startswith("{") else 1]:
                    refs.add(names.get(n, n))
            graph[m] |= {r for r in refs if r in mods and r != m}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph, if any."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                c = visit(d)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main() -> int:
    failed = False
    crates = sorted((ROOT / "crates").glob("*/Cargo.toml"))
    print("crate arrows:")
    for cargo in crates:
        name, ds = deps(cargo)
        print(f"  {name} -> {', '.join(sorted(ds)) or '(none)'}")
        if name not in ALLOWED:
            print(f"error: {cargo}: crate {name} has no entry in scripts/check_arrows.py ALLOWED")
            failed = True
        elif ds - ALLOWED[name]:
            print(f"error: {cargo}: {name} must not depend on {', '.join(sorted(ds - ALLOWED[name]))} (an arrow pointing up)")
            failed = True
    print("module arrows:")
    for cargo in crates:
        name, _ = deps(cargo)
        graph = module_graph(cargo.parent / "src")
        for m in sorted(graph):
            if graph[m]:
                print(f"  {name}::{m} -> {', '.join(sorted(graph[m]))}")
        c = cycle(graph)
        if c:
            print(f"error: {name}: module cycle {' -> '.join(c)}")
            failed = True
    print("no upward crate dependencies, no module cycles" if not failed else "FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
