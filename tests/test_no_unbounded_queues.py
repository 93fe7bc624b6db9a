"""No unbounded queue anywhere in the code base (DESIGN §2).

An AST scan of every module under the shipped packages and scripts. It resolves import
aliases (``import asyncio as aio``, ``from collections import deque``) and fails on:

- ``asyncio``/``queue``/``multiprocessing`` queues without a positive ``maxsize``, and
  ``SimpleQueue`` (which has no bound at all);
- ``anyio.create_memory_object_stream`` and ``trio.open_memory_channel`` without an
  explicit, finite ``max_buffer_size`` (``math.inf`` and ``float("inf")`` are infinite);
- ``collections.deque`` without a ``maxlen``.

A bound given as an expression (``maxsize=config.buffer``) is accepted: the scan cannot
evaluate it, and the configuration that feeds it is validated where it is defined.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("actors", "supervisors", "runtime", "transport", "scripts")

#: Queue classes bounded by ``maxsize`` (first positional argument); <= 0 is unbounded.
MAXSIZE_QUEUES = frozenset(
    {
        "asyncio.Queue",
        "asyncio.LifoQueue",
        "asyncio.PriorityQueue",
        "asyncio.queues.Queue",
        "asyncio.queues.LifoQueue",
        "asyncio.queues.PriorityQueue",
        "queue.Queue",
        "queue.LifoQueue",
        "queue.PriorityQueue",
        "multiprocessing.Queue",
        "multiprocessing.JoinableQueue",
    }
)
#: Queues that cannot be bounded at all.
UNBOUNDABLE = frozenset({"queue.SimpleQueue", "multiprocessing.SimpleQueue"})
#: Stream and channel factories bounded by ``max_buffer_size`` (first positional).
BUFFERED_STREAMS = frozenset(
    {
        "anyio.create_memory_object_stream",
        "anyio.streams.memory.create_memory_object_stream",
        "trio.open_memory_channel",
    }
)
INFINITIES = frozenset({"math.inf", "numpy.inf", "cmath.inf"})


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.aliases: dict[str, str] = {}
        self.findings: list[Finding] = []

    # -- names -----------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.partition(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            for alias in node.names:
                self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def qualify(self, node: ast.expr) -> str | None:
        """``aio.Queue`` -> ``asyncio.Queue``; None for anything but a dotted name."""
        if isinstance(node, ast.Subscript):  # create_memory_object_stream[int](...)
            return self.qualify(node.value)
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    # -- bounds ----------------------------------------------------------------------

    def is_infinite(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            return node.value == float("inf")
        if isinstance(node, ast.Call) and self.qualify(node.func) == "float" and node.args:
            arg = node.args[0]
            return (
                isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value.strip().lower().lstrip("+") in {"inf", "infinity"}
            )
        return self.qualify(node) in INFINITIES

    @staticmethod
    def argument(node: ast.Call, position: int, keyword: str) -> ast.expr | None:
        for kw in node.keywords:
            if kw.arg == keyword:
                return kw.value
        if len(node.args) > position and not any(
            isinstance(arg, ast.Starred) for arg in node.args[: position + 1]
        ):
            return node.args[position]
        return None

    @staticmethod
    def unknowable(node: ast.Call) -> bool:
        """``f(*args)`` or ``f(**kwargs)``: the bound may be in there."""
        return any(isinstance(arg, ast.Starred) for arg in node.args) or any(
            kw.arg is None for kw in node.keywords
        )

    def flag(self, node: ast.AST, message: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), message))

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualify(node.func)
        if name in UNBOUNDABLE:
            self.flag(node, f"{name}() has no bound; use a Queue with a positive maxsize")
        elif name in MAXSIZE_QUEUES:
            bound = self.argument(node, 0, "maxsize")
            if bound is None:
                if not self.unknowable(node):
                    self.flag(node, f"{name}() without maxsize is unbounded")
            elif self.is_infinite(bound) or (
                isinstance(value := literal(bound), int | float) and value <= 0
            ):
                self.flag(node, f"{name}(maxsize={ast.unparse(bound)}) is unbounded")
        elif name in BUFFERED_STREAMS:
            bound = self.argument(node, 0, "max_buffer_size")
            if bound is None:
                if not self.unknowable(node):
                    self.flag(node, f"{name}() needs an explicit, finite max_buffer_size")
            elif self.is_infinite(bound):
                self.flag(node, f"{name}({ast.unparse(bound)}) has an infinite buffer")
        elif name == "collections.deque":
            bound = self.argument(node, 1, "maxlen")
            if bound is None:
                if not self.unknowable(node):
                    self.flag(node, "collections.deque() without maxlen is unbounded")
            elif literal(bound) is None:
                self.flag(node, "collections.deque(maxlen=None) is unbounded")
        self.generic_visit(node)


def literal(node: ast.expr) -> object:
    """The value of a literal (``0``, ``-1``, ``None``), or ``NotImplemented``."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return NotImplemented


def scan_source(source: str, path: str = "<snippet>") -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.findings


def scanned_files() -> list[Path]:
    return sorted(
        path
        for folder in SCANNED
        if (ROOT / folder).is_dir()
        for path in (ROOT / folder).rglob("*.py")
        if ".venv" not in path.parts
    )


def test_code_base_has_no_unbounded_queue() -> None:
    files = scanned_files()
    # The scan must see the code base, not an empty directory: the kernel alone has
    # more than ten modules.
    assert len(files) >= 10, files
    assert {path.relative_to(ROOT).parts[0] for path in files} >= {"actors"}
    findings = [
        finding
        for path in files
        for finding in scan_source(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize(
    "snippet",
    [
        "import asyncio\nq = asyncio.Queue()",
        "import asyncio\nq = asyncio.Queue(0)",
        "import asyncio\nq = asyncio.Queue(maxsize=-1)",
        "import asyncio as aio\nq = aio.LifoQueue()",
        "from asyncio import PriorityQueue\nq = PriorityQueue()",
        "import asyncio\nimport math\nq = asyncio.Queue(maxsize=math.inf)",
        "import queue\nq = queue.Queue()",
        "from queue import Queue as Q\nq = Q(maxsize=0)",
        "import queue\nq = queue.SimpleQueue()",
        "from queue import SimpleQueue\nq = SimpleQueue()",
        "import anyio\nsend, receive = anyio.create_memory_object_stream()",
        "import anyio, math\nsend, receive = anyio.create_memory_object_stream(math.inf)",
        "import anyio\nfrom math import inf\ns, r = anyio.create_memory_object_stream[int](inf)",
        "import anyio\ns, r = anyio.create_memory_object_stream(max_buffer_size=float('inf'))",
        "from anyio import create_memory_object_stream as cmos\ns, r = cmos(float('Infinity'))",
        "import trio, math\nsend, receive = trio.open_memory_channel(math.inf)",
        "import trio\nsend, receive = trio.open_memory_channel(float('inf'))",
        "import collections\nd = collections.deque()",
        "from collections import deque\nd = deque([1, 2])",
        "from collections import deque\nd = deque([], None)",
        "from collections import deque\nd = deque(maxlen=None)",
        "def f():\n    from collections import deque\n    return deque()",
        "class A:\n    def __init__(self):\n        import asyncio as aio\n"
        "        self.q = aio.Queue()",
    ],
)
def test_scanner_flags_unbounded_queues(snippet: str) -> None:
    findings = scan_source(snippet)
    assert len(findings) == 1, snippet
    assert findings[0].line == len(snippet.splitlines())


@pytest.mark.parametrize(
    "snippet",
    [
        "import asyncio\nq = asyncio.Queue(16)",
        "import asyncio\nq = asyncio.Queue(maxsize=1024)",
        "import asyncio\nq = asyncio.Queue(maxsize=config.buffer)",
        "import queue\nq = queue.Queue(8)",
        "import anyio\ns, r = anyio.create_memory_object_stream(0)",
        "import anyio\ns, r = anyio.create_memory_object_stream[bytes](max_buffer_size=64)",
        "import trio\ns, r = trio.open_memory_channel(0)",
        "from collections import deque\nd = deque(maxlen=8)",
        "from collections import deque\nd = deque([1], 8)",
        "from collections import deque\nd = deque(maxlen=max(1, limit))",
        "import collections\nd = collections.deque(items, maxlen=n)",
        # Not the standard library's deque or queue: out of scope.
        "from mylib import deque\nd = deque()",
        "q = Queue()",
        "x = [1, 2, 3]",
    ],
)
def test_scanner_accepts_bounded_queues(snippet: str) -> None:
    assert scan_source(snippet) == []


def test_scanner_reports_every_finding_with_its_location() -> None:
    source = textwrap.dedent(
        """\
        import asyncio
        from collections import deque

        a = asyncio.Queue()
        b = asyncio.Queue(4)
        c = deque()
        """
    )
    assert [(f.line, f.message) for f in scan_source(source, "mod.py")] == [
        (4, "asyncio.Queue() without maxsize is unbounded"),
        (6, "collections.deque() without maxlen is unbounded"),
    ]
    assert str(scan_source(source, "mod.py")[0]).startswith("mod.py:4: ")
