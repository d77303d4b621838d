"""The library adapters state what they rely on, for one reviewed version of each library, and nothing else of ours
patches those libraries.

The second half is a static check over `components/` and `app.py` (outside `components/adapters/`): it fails,
naming the place, on an assignment, `del` or `setattr` to an attribute of a fastrtc or aiortc module, class or
object, on a read of one of their private (`_`-prefixed) attributes, and on a subclass of one of their classes that
sets one of *their* attributes or overrides one of their private methods. Our own attributes on our own subclasses
are ours. What counts as a library object:
a name imported from the library, a parameter or variable annotated with (or built from) one of its classes, and
`self` in a class that derives from one (through ours too, such as the adapters' hook classes). The library's
attributes are read from the installed library itself (its classes' `dir()` and every `self.<name> =` in their
source), so the check follows the version the adapters were reviewed for.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version
from pathlib import Path

import av
import numpy as np

from components.adapters.aiortc import AIORTC_VERSION
from components.adapters.fastrtc import FASTRTC_VERSION
from components.engines.live.handler import LiveHandler
from components.engines.pipeline.handler import PipelineHandler
from components.engines.realtime.handler import RealtimeHandler
from components.restaurant.config import load_config
from components.settings import AgentSettings
from components.store.reservations import ReservationStore

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("fastrtc", "aiortc")
ADAPTERS = "components/adapters/"


def test_fastrtc_is_the_version_its_adapter_was_reviewed_for() -> None:
    assert version("fastrtc") == FASTRTC_VERSION, (
        f"fastrtc is now {version('fastrtc')}: review components/adapters/fastrtc.py against it (each thing it "
        "relies on is listed at the top), then set FASTRTC_VERSION"
    )


def test_aiortc_is_the_version_its_adapter_was_reviewed_for() -> None:
    assert version("aiortc") == AIORTC_VERSION, (
        f"aiortc is now {version('aiortc')}: review components/adapters/aiortc.py against it (what it relies on is "
        "listed at the top), then set AIORTC_VERSION"
    )


def test_every_engine_hears_each_20_ms_frame_of_a_webrtc_caller_as_it_comes(tmp_path: Path) -> None:
    """aiortc decodes the caller's Opus into 20 ms frames at 48 kHz (stereo). fastrtc's own resampling would hold them
    back until 960 samples at the engine's rate had gathered (60 ms at the pipeline's 16 kHz): each must reach the
    engine at once, at its rate, with the signal intact."""
    store = ReservationStore(tmp_path / "reservations.db")
    engines = [
        engine(load_config(), store, AgentSettings()) for engine in (PipelineHandler, RealtimeHandler, LiveHandler)
    ]
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(48_000) / 48_000)).astype(np.int16)
    for handler in engines:
        rate = handler.input_sample_rate
        heard: list[np.ndarray] = []
        for index in range(50):  # one second of 20 ms frames
            samples = tone[index * 960 : (index + 1) * 960]
            frame = av.AudioFrame.from_ndarray(np.repeat(samples, 2).reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate = 48_000
            pieces = list(handler.resample(frame))
            assert all(piece.sample_rate == rate and piece.layout.name == "mono" for piece in pieces)
            heard.append(
                np.concatenate([piece.to_ndarray().reshape(-1) for piece in pieces] or [np.zeros(0, np.int16)])
            )
        name = type(handler).__name__
        assert all(abs(piece.size - rate // 50) <= rate // 1000 for piece in heard), (name, [p.size for p in heard])
        audio = np.concatenate(heard)
        spectrum = np.abs(np.fft.rfft(audio[rate // 10 :].astype(np.float64)))
        peak_hz = np.argmax(spectrum) * rate / (audio.size - rate // 10)
        assert abs(peak_hz - 440) < 5 and abs(float(np.max(np.abs(audio[rate // 10 :]))) - 8000) < 400, (name, peak_hz)


# ---- the static check ----


def is_library(name: str | None) -> bool:
    return name is not None and name.split(".")[0] in LIBRARIES


@cache
def library_object(name: str) -> object:
    """The library's module, class or function with this dotted name."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part)
        return found
    raise ImportError(name)


@cache
def library_attributes(name: str) -> frozenset[str]:
    """Every attribute a library class has or sets on its instances (in any class it derives from)."""
    cls = library_object(name)
    names = set(dir(cls))
    for base in inspect.getmro(cls) if isinstance(cls, type) else ():
        if base is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(base))
        except (OSError, TypeError):  # a class with no Python source sets nothing through `self.`
            continue
        for node in ast.walk(ast.parse(source)):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self":
                    names.add(target.attr)
    return frozenset(names)


@dataclass
class Tree:
    """Our modules, enough of them to tell which of our classes derive from a library class."""

    aliases: dict[str, dict[str, str]] = field(default_factory=dict)  # file → local name → dotted name
    bases: dict[str, list[str]] = field(default_factory=dict)  # our class → its bases, dotted

    @classmethod
    def read(cls, root: Path) -> Tree:
        tree = cls()
        for path in files(root, adapters=True):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            syntax = ast.parse(path.read_text(encoding="utf-8"))
            aliases = tree.aliases[str(path.relative_to(root))] = {}
            for node in ast.walk(syntax):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        local = alias.asname or alias.name.split(".")[0]
                        aliases[local] = alias.name if alias.asname else local
                elif isinstance(node, ast.ImportFrom):
                    folder = path.relative_to(root).parts[:-1]
                    package = list(folder[: len(folder) - node.level + 1]) if node.level else []
                    source = ".".join([*package, *([node.module] if node.module else [])])
                    for alias in node.names:
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif isinstance(node, ast.ClassDef):
                    aliases.setdefault(node.name, f"{module}.{node.name}")
            for node in ast.walk(syntax):
                if isinstance(node, ast.ClassDef):
                    tree.bases[f"{module}.{node.name}"] = [
                        name for base in node.bases if (name := dotted(base, aliases)) is not None
                    ]
        return tree

    def roots(self, name: str | None) -> frozenset[str]:
        """The library classes `name` is or derives from (through our classes too)."""
        if name is None:
            return frozenset()
        if is_library(name):
            return frozenset({name})
        return frozenset().union(*(self.roots(base) for base in self.bases.get(name, [])))


def dotted(node: ast.expr | None, aliases: dict[str, str]) -> str | None:
    """The dotted name a name or attribute stands for, as far as the file's imports and classes say."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = dotted(node.value, aliases)
        return f"{owner}.{node.attr}" if owner else None
    return None


def annotated(node: ast.expr | None, aliases: dict[str, str]) -> str | None:
    """The class a type annotation names (`X`, `X | None`, `"X"`), as far as the file's imports say."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return annotated(ast.parse(node.value, mode="eval").body, aliases)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return annotated(node.left, aliases) or annotated(node.right, aliases)
    return dotted(node, aliases)


def files(root: Path, adapters: bool = False) -> list[Path]:
    found = [root / "app.py"] if (root / "app.py").exists() else []
    found += sorted((root / "components").rglob("*.py"))
    return [path for path in found if adapters or not str(path.relative_to(root)).startswith(ADAPTERS)]


class Patches(ast.NodeVisitor):
    """Walks one file, knowing in each scope which names hold a library object, and collects every patch."""

    def __init__(self, tree: Tree, where: str) -> None:
        self.tree = tree
        self.where = where
        self.aliases = tree.aliases[where]
        self.scopes: list[dict[str, str]] = [{}]  # name → the dotted class of the object it holds
        self.classes: list[str | None] = [None]  # the subclass of a library class whose body we are in, if any
        self.found: list[str] = []

    # what a name holds

    def kind(self, node: ast.expr) -> tuple[str, frozenset[str]] | None:
        """('library', {name}) for a library module, class or instance; ('ours', roots) for an instance of our
        subclass of library classes; None for anything else."""
        name = None
        if isinstance(node, ast.Name) and node.id in ("self", "cls") and self.classes[-1]:
            name = self.classes[-1]
        elif isinstance(node, ast.Name):
            name = next((scope[node.id] for scope in reversed(self.scopes) if node.id in scope), None)
            name = name or self.aliases.get(node.id)
        elif isinstance(node, ast.Call):
            name = dotted(node.func, self.aliases)
        elif isinstance(node, ast.Attribute):
            name = dotted(node, self.aliases)
        if is_library(name):
            return "library", frozenset({name})
        roots = self.tree.roots(name)
        return ("ours", roots) if roots else None

    def owned(self, node: ast.expr, attribute: str | None) -> str | None:
        """Which library owns `node.attribute`, or None when it is ours (or not a library object at all)."""
        kind = self.kind(node)
        if kind is None:
            return None
        what, roots = kind
        if what == "library":
            return next(iter(roots))
        for root in sorted(roots):
            if attribute is None or attribute in library_attributes(root):
                return root
        return None

    def report(self, node: ast.AST, message: str) -> None:
        self.found.append(f"{self.where}:{node.lineno} {message}")

    # scopes

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        module = ".".join(Path(self.where).with_suffix("").parts).removesuffix(".__init__")
        name = f"{module}.{node.name}"
        roots = self.tree.roots(name)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                private = item.name.startswith("_") and not item.name.endswith("__")
                for root in sorted(roots):
                    if private and item.name in library_attributes(root):
                        self.report(item, f"{node.name} overrides {root}.{item.name}, a private method")
        self.classes.append(name if roots else None)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        scope = {}
        arguments = node.args
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            name = annotated(argument.annotation, self.aliases)
            if is_library(name) or self.tree.roots(name):
                scope[argument.arg] = name
        self.scopes.append(scope)  # a nested function sees its enclosing ones' names, and `self`
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    # bindings and patches

    def bind(self, target: ast.expr, value: ast.expr | None, annotation: ast.expr | None = None) -> None:
        """Note what a plain name now holds: an instance of a library class (or of our subclass of one), when its
        annotation says so or it was just built; anything else forgets what the name held."""
        if not isinstance(target, ast.Name):
            return
        name = annotated(annotation, self.aliases)
        if name is None and isinstance(value, ast.Call):
            name = dotted(value.func, self.aliases)
        if (is_library(name) and isinstance(library_object(name), type)) or self.tree.roots(name):
            self.scopes[-1][target.id] = name
        else:
            self.scopes[-1].pop(target.id, None)

    def patched(self, target: ast.expr, verb: str) -> None:
        for node in targets(target):
            if isinstance(node, ast.Attribute):
                owner = self.owned(node.value, node.attr)
                if owner is not None:
                    self.report(node, f"{verb} {ast.unparse(node)}, an attribute of {owner}")

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self.patched(target, "assigns")
            self.bind(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        self.patched(node.target, "assigns")
        self.bind(node.target, node.value, node.annotation)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        self.patched(node.target, "assigns")

    def visit_Delete(self, node: ast.Delete) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self.patched(target, "deletes")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        private = node.attr.startswith("_") and not node.attr.endswith("__")
        if private and isinstance(node.ctx, ast.Load):
            owner = self.owned(node.value, node.attr)
            if owner is not None:
                self.report(node, f"reads {ast.unparse(node)}, a private attribute of {owner}")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and node.args:
            attribute = node.args[1] if len(node.args) > 1 else None
            name = attribute.value if isinstance(attribute, ast.Constant) else None
            owner = self.owned(node.args[0], name if isinstance(name, str) else None)
            if owner is not None:
                self.report(node, f"{node.func.id}({ast.unparse(node.args[0])}, …) on {owner}")


def targets(node: ast.expr) -> Iterator[ast.expr]:
    if isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            yield from targets(element)
    elif isinstance(node, ast.Starred):
        yield from targets(node.value)
    else:
        yield node


def patches(root: Path = ROOT) -> list[str]:
    """Every place outside the adapters that patches fastrtc or aiortc, as `path:line what`."""
    tree = Tree.read(root)
    found = []
    for path in files(root):
        where = str(path.relative_to(root))
        visitor = Patches(tree, where)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        found += visitor.found
    return sorted(found, key=lambda place: (place.split(":")[0], int(place.split(":")[1].split()[0])))


def test_nothing_outside_the_adapters_patches_fastrtc_or_aiortc() -> None:
    found = patches()
    assert found == [], "move these into components/adapters/ (fastrtc.py or aiortc.py), saying why there"


def test_the_check_itself_catches_each_kind_of_patch(tmp_path: Path) -> None:
    """On a small tree: a module attribute swapped, a method reassigned on a fastrtc object (annotated, built, or
    imported), `setattr`, a fastrtc attribute set on our subclass, a private method overridden and a private
    attribute read (also through an adapter's class) are each caught; our own attributes and methods on our
    subclasses, and objects of ours, are not."""
    (tmp_path / "components" / "adapters").mkdir(parents=True)
    (tmp_path / "components" / "adapters" / "fastrtc.py").write_text(
        "from fastrtc.websocket import WebSocketHandler\n"
        "class Hooks(WebSocketHandler):\n"
        "    def _clear_queue(self):\n"
        "        self.playing_durations = []\n"
    )
    (tmp_path / "components" / "probe.py").write_text(
        "from aiortc import rtcrtpreceiver\n"
        "import fastrtc\n"
        "from fastrtc import Stream, WebRTC\n"
        "from components.adapters.fastrtc import Hooks\n"
        "rtcrtpreceiver.JitterBuffer = object\n"
        "def guard(component: WebRTC | None, other: 'fastrtc.WebRTC', mine: dict) -> None:\n"
        "    component.handle_offer = None\n"
        "    setattr(other, 'clean_up', None)\n"
        "    mine.handle_offer = None\n"
        "    built = WebRTC()\n"
        "    built.clean_up = None\n"
        "class Ours(Stream):\n"
        "    def __init__(self):\n"
        "        self.config = 1\n"
        "        self.server_rtc_configuration = None\n"
        "    def _check_colab_or_spaces(self):\n"
        "        pass\n"
        "    def _ours(self):\n"
        "        return self._ours, self.config\n"
        "class Call(Hooks):\n"
        "    def _clear_queue(self):\n"
        "        self.line = None\n"
        "    def on_barge_in(self):\n"
        "        self.quit = None\n"
        "        return self.start_up_task, self._emit_task\n"
        "class Plain:\n"
        "    def __init__(self):\n"
        "        self.handle_offer = None\n"
    )
    assert patches(tmp_path) == [
        "components/probe.py:5 assigns rtcrtpreceiver.JitterBuffer, an attribute of aiortc.rtcrtpreceiver",
        "components/probe.py:7 assigns component.handle_offer, an attribute of fastrtc.WebRTC",
        "components/probe.py:8 setattr(other, …) on fastrtc.WebRTC",
        "components/probe.py:11 assigns built.clean_up, an attribute of fastrtc.WebRTC",
        "components/probe.py:15 assigns self.server_rtc_configuration, an attribute of fastrtc.Stream",
        "components/probe.py:16 Ours overrides fastrtc.Stream._check_colab_or_spaces, a private method",
        "components/probe.py:21 Call overrides fastrtc.websocket.WebSocketHandler._clear_queue, a private method",
        "components/probe.py:24 assigns self.quit, an attribute of fastrtc.websocket.WebSocketHandler",
        "components/probe.py:25 reads self._emit_task, a private attribute of fastrtc.websocket.WebSocketHandler",
    ]
