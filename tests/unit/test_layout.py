"""The house's rules, read from the code's own imports (every import, module-level or inside a function):
no import circle, and the arrows that must not exist (docs/ARCHITECTURE.md, "Layout")."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workbench", "interventions")

ATTENTION_ROOMS = ("plan", "blocks", "keys", "families", "seam")

# (importer prefix, imported prefix, why it is forbidden)
FORBIDDEN = [
    ("workbench.core", "workbench.", "the ground floor imports nothing above it"),
    ("workbench.core", "interventions", "the ground floor imports nothing above it"),
    ("workbench.zoo", "workbench.toy", "the zoo imports no family: toy registers its loader"),
    *[("workbench.attention", above, "the attention path stands on the ground floor (workbench.core) only")
      for above in ("workbench.passes", "workbench.zoo", "workbench.probes", "workbench.experiment",
                    "workbench.streaming", "workbench.toy", "workbench.vision", "workbench.cli", "interventions")],
    *[(f"workbench.attention.{low}", f"workbench.attention.{high}", "the attention rooms stand in the order plan, "
       "blocks, keys, families, seam: each imports only those before it")
      for i, low in enumerate(ATTENTION_ROOMS) for high in ATTENTION_ROOMS[i + 1:]],
    ("workbench.zoo", "workbench.vision", "the zoo imports no family: vision registers its loaders"),
    ("workbench.probes", "interventions", "probes are read-only: they never import the catalogue"),
    ("workbench.probes", "workbench.experiment", "probes never import the runner"),
    ("workbench.plots", "workbench.experiment", "plots draw Results; they never run a model"),
    ("workbench.plots", "workbench.probes", "plots draw Results; they never run a model"),
    ("workbench.plots", "workbench.streaming", "plots draw Results; they never run a model"),
    ("workbench.plots", "workbench.zoo", "plots draw Results; they never run a model"),
    ("workbench.plots", "workbench.toy.train", "plots draw Results; they never train"),
    ("workbench.plots", "workbench.vision.train", "plots draw Results; they never train"),
    ("workbench.plots", "workbench.passes", "plots draw Results; they never run a model"),
    ("workbench.plots", "interventions", "plots draw Results; they never run a model"),
    ("workbench.toy", "workbench.probes", "domain rooms hold models, inputs and training: no probing"),
    ("workbench.toy", "workbench.plots", "domain rooms hold models, inputs and training: no plotting"),
    ("workbench.vision", "workbench.probes", "domain rooms hold models, inputs and training: no probing"),
    ("workbench.vision", "workbench.plots", "domain rooms hold models, inputs and training: no plotting"),
    ("workbench.multimodal", "workbench.probes", "domain rooms hold models, inputs and training: no probing"),
    ("workbench.multimodal", "workbench.plots", "domain rooms hold models, inputs and training: no plotting"),
    ("workbench.zoo", "workbench.multimodal", "the zoo imports no family: multimodal registers its loaders"),
]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import submodule` is an arrow to the submodule, not to pkg/__init__
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved and resolved != module:
                out.add(resolved)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _within(module: str, prefix: str) -> bool:
    return module == prefix.rstrip(".") or module.startswith(prefix if prefix.endswith(".") else prefix + ".") \
        or (not prefix.endswith(".") and module == prefix)


def test_no_import_circle(graph):
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            circle = visit(node)
            assert circle is None, "import circle: " + " -> ".join(circle)


@pytest.mark.parametrize("importer, imported, why", FORBIDDEN)
def test_forbidden_arrows(graph, importer, imported, why):
    bad = sorted(f"{src} -> {dst}" for src, dsts in graph.items() if _within(src, importer)
                 for dst in dsts if _within(dst, imported) and not _within(dst, importer))
    assert not bad, f"{why}: " + "; ".join(bad)


def test_the_rules_see_real_arrows(graph):
    # the parser must find the arrows that do exist, or the rules above would pass vacuously
    assert "workbench.core.errors" in graph["workbench.core.data"]
    assert "workbench.zoo.cards" in graph["workbench.zoo.load"]
    assert any(dst.startswith("workbench.core") for dst in graph["interventions.mechanisms"])
