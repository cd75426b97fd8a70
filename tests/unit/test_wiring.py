"""The web app's wiring stays in one place (``app/core.py``, mapped in docs/architecture.md):
a short factory, handlers that take typed dependencies instead of reading ``app.state``, and the
lifespans and outer layers in their documented order."""

from __future__ import annotations

import ast
import copy
import inspect
import re
from pathlib import Path

from litestar.config.app import AppConfig

from wingman.app import create_app
from wingman.app.core import LIFESPANS, OUTER_LAYERS, CorePlugin
from wingman.config import Settings
from wingman.server.app_resources import app_resources

SRC = Path(__file__).resolve().parents[2] / "src" / "wingman"
ARCHITECTURE = SRC.parents[1] / "docs" / "architecture.md"

# Code that may read app.state, and why. Everything else (every handler, provider and domain
# module) gets what it needs as a dependency or as an argument.
ALLOWED_STATE_READERS = {
    # The accessor itself: the one key the process keeps in app.state.
    "server/app_resources.py",
}


def state_reads(tree: ast.AST) -> list[int]:
    """Lines reading ``<app>.state`` (``app.state``, ``request.app.state``,
    ``scope["litestar_app"].state``, ``self.litestar.state``) or taking Litestar's ``state``
    argument (a parameter named ``state`` typed ``State``)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "state":
            owner = node.value
            if (
                (isinstance(owner, ast.Name) and owner.id in {"app", "litestar"})
                or (isinstance(owner, ast.Attribute) and owner.attr in {"app", "litestar"})
                or isinstance(owner, ast.Subscript)
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.arg) and node.arg == "state":
            annotation = ast.unparse(node.annotation) if node.annotation else ""
            if annotation == "State" or annotation.endswith(".State"):
                lines.append(node.lineno)
    return lines


def test_create_app_is_short() -> None:
    assert len(inspect.getsource(create_app).splitlines()) < 40


def test_no_handler_or_domain_module_reads_app_state() -> None:
    found = {}
    for path in sorted([*(SRC / "domain").rglob("*.py"), *(SRC / "server").rglob("*.py")]):
        name = path.relative_to(SRC).as_posix()
        if name in ALLOWED_STATE_READERS:
            continue
        lines = state_reads(ast.parse(path.read_text(), filename=str(path)))
        if lines:
            found[name] = lines
    assert found == {}


def test_the_check_sees_each_form_of_state_read() -> None:
    source = """
async def handler(request, state: State, socket):
    request.app.state.x
    socket.app.state.x
    app.state.x
    scope["litestar_app"].state.x
    self.litestar.state.x
"""
    assert state_reads(ast.parse(source)) == [2, 3, 4, 5, 6, 7]


def test_the_lifespans_start_in_the_documented_order() -> None:
    config = CorePlugin(Settings()).on_app_init(AppConfig())
    assert config.lifespan == list(LIFESPANS)
    # The database plugin's lifespan comes after them: the core plugin is the first plugin.
    plugins = CorePlugin(Settings()).plugins()
    assert isinstance(plugins[0], CorePlugin)
    documented = re.findall(r"^\d+\. `(\w+)`", ARCHITECTURE.read_text(), flags=re.MULTILINE)
    assert documented == [lifespan.__name__ for lifespan in LIFESPANS]


def test_the_outer_layers_wrap_the_router_in_the_documented_order() -> None:
    app = create_app(Settings())
    layers = []
    handler = app.asgi_handler
    while type(handler) in OUTER_LAYERS:
        layers.append(type(handler))
        handler = handler.app  # type: ignore[attr-defined]
    # Outermost first from the app; OUTER_LAYERS lists them innermost first.
    assert layers == list(reversed(OUTER_LAYERS))
    documented = re.findall(r"^- `(\w+)`", ARCHITECTURE.read_text(), flags=re.MULTILINE)
    assert documented == [layer.__name__ for layer in reversed(OUTER_LAYERS)]


def test_the_app_keeps_one_resources_object_in_state() -> None:
    settings = Settings()
    app = create_app(settings)
    resources = app_resources(app)
    assert resources.settings is settings
    assert list(app.state.dict()) == ["wingman"]
    # A copy of the state (Litestar makes some) shares the process's resources.
    assert copy.deepcopy(app.state.dict())["wingman"] is resources
