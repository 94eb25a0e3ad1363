"""The package's import graph is acyclic, and every module imports on its own."""
import ast
import pathlib
import subprocess
import sys

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "anekit"


def modules() -> dict[str, tuple[pathlib.Path, bool]]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> anekit modules it imports anywhere in its body (function-level imports too).
    `from pkg import name` counts as importing pkg.name when that is a module, else pkg."""
    mods = modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.split(".")[0] == "anekit")
            elif isinstance(node, ast.ImportFrom):
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                if target.split(".")[0] != "anekit":
                    continue
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                deps.update(subs or [target])
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_acyclic():
    graph = import_graph()
    assert len(graph) > 100 and "anekit.runtime.ane.transport" in graph
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_abstract_transport_imports_no_sibling():
    assert not {d for d in import_graph()["anekit.runtime.ane.transport"] if d.startswith("anekit.runtime")}


def test_every_module_imports_alone():
    """Each module in an interpreter where no other anekit module has been imported yet."""
    names = [m for m in modules() if not m.endswith("__main__") and not m.endswith("worker_main")]
    script = (
        "import importlib, sys\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'anekit' or m.startswith('anekit.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", r.stdout


# Imports deliberately made inside functions: optional dependencies (matplotlib), the CLI's
# command handlers (every start registers every command; each loads only what it runs) and the
# importers' entry points (each importer module imports torch or onnx, optional and slow).
LAZY_IMPORTS_ALLOWED = ("anekit/cli/", "anekit/cost/roofline.py", "anekit/importers/__init__.py")
# Optional extras (pyproject's optional-dependencies): imported where used, so the core needs
# numpy alone.
OPTIONAL_PACKAGES = frozenset({"matplotlib", "scipy", "sklearn", "tqdm", "torch", "safetensors", "tokenizers",
                               "transformers", "onnx", "onnxruntime", "ray", "coremltools", "rich",
                               "numba", "llvmlite"})


def _optional(node) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] in OPTIONAL_PACKAGES
    return all(a.name.split(".")[0] in OPTIONAL_PACKAGES for a in node.names)


def test_imports_sit_at_module_top_unless_optional_or_slow():
    inside = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(LAZY_IMPORTS_ALLOWED):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{rel}:{n.lineno}" for n in ast.walk(fn)
                           if isinstance(n, (ast.Import, ast.ImportFrom)) and not _optional(n)]
    assert not inside, inside
