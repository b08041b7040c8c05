"""Imports inside the package run one way, from the leaves up to the models, the pipeline, the command and training.

The graph is read from the source (every `import` statement, those inside functions included, except under
`if TYPE_CHECKING:`), so a lazy import that closes a cycle fails as an eager one does.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest


PACKAGE = "diffusers_videolatent"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
# modules that import nothing of ours but each other: what every other layer may read
LEAVES = {"_checks", "atomic", "compat", "geometry", "generation_defaults"}
# modules that read saved folders and configs: they may use the leaves, never the models or the pipeline
CONFIG_READERS = {"hub", "model_card", "remote_code"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    r"""The modules of the package that `path` imports, anywhere in its body."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    stack = [ast.parse(path.read_text(), filename=str(path))]
    while stack:
        node = stack.pop()
        if is_type_checking_block(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from .pkg import name` imports `pkg`, and `pkg.name` when that is a module
            targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [path for path in PACKAGE_DIR.rglob("*.py") if "default_model" not in path.parts]
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for target in graph[stack.pop()]:
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    # known edges, so that an empty graph cannot pass the tests below
    assert f"{PACKAGE}.models.unet_spatio_temporal" in graph[f"{PACKAGE}.pipelines.pipeline_video_latent"]
    assert f"{PACKAGE}.geometry" in graph[f"{PACKAGE}.models.autoencoder_kl_video"]
    assert f"{PACKAGE}.pipelines" in graph[f"{PACKAGE}.cli"]  # a lazy import inside a function


def test_there_is_no_import_cycle():
    graph = import_graph()
    cycles = sorted(module for module in graph if module in reachable(graph, module))
    assert cycles == [], f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaves_import_only_leaves(leaf):
    imported = import_graph()[f"{PACKAGE}.{leaf}"]
    assert imported <= {f"{PACKAGE}.{name}" for name in LEAVES} | {PACKAGE}


@pytest.mark.parametrize("reader", sorted(CONFIG_READERS))
def test_config_readers_never_reach_the_models_or_the_pipeline(reader):
    above = {
        module
        for module in reachable(import_graph(), f"{PACKAGE}.{reader}")
        if module.startswith((f"{PACKAGE}.models", f"{PACKAGE}.pipelines", f"{PACKAGE}.training"))
    }
    assert above == set()


def test_publishing_and_model_cards_load_no_model_code():
    # the same, at run time: rendering a card and pushing a folder import neither the models nor the pipeline
    code = (
        f"import sys, {PACKAGE}.hub, {PACKAGE}.model_card;"
        f"print(sorted(name for name in sys.modules if name.startswith(('{PACKAGE}.models', '{PACKAGE}.pipelines'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
