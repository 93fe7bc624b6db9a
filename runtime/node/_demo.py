"""``warden demo``: a node at work, shown live — nothing to set up.

On a fresh machine it starts the embedded PostgreSQL (or uses ``WARDEN_DSN``) and a node
in this process, starts five ``chat`` runs and shows their events as they are committed.
Mid-stream it kills one run's actor — no cleanup, as if it crashed — and the run resumes
from its log without repeating a token; it cancels another. Then it prints the
supervision tree and a summary per run, and checks what it showed: every log gap-free
with one terminal event, every token once, every hash chain intact. Exit status 0 when
all of that holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from runtime.node._node import Node
from runtime.store import TERMINAL_EVENTS, TERMINAL_STATUSES

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from runtime.config import NodeConfig
    from runtime.store import Event
    from supervisors import SupervisorSnapshot

__all__ = ["run_demo"]

#: The five turns: tokens streamed at 25 per second, one or two tool calls each.
_PROMPTS: Final = (
    "what is a lease?",
    "why replay the log?",
    "who fences a stale writer?",
    "how does cancel work?",
    "what does the janitor do?",
)
_TOKENS: Final = 48
_RATE: Final = 25.0
#: Run #2's actor is killed once it has streamed this many tokens.
_KILL_AT: Final = 15
#: Run #4 is cancelled once it has streamed this many tokens.
_CANCEL_AT: Final = 10
#: The longest the runs may take before the demo gives up (they need about 3 s).
_RUNS_TIMEOUT: Final = 60.0
_KILLED: Final = 1
_CANCELLED: Final = 3


@dataclass
class _Run:
    """What the display knows of one run."""

    number: int
    run_id: UUID
    prompt: str
    events: list[Event] = field(default_factory=list)
    updated: anyio.Event = field(default_factory=anyio.Event)

    def add(self, events: list[Event]) -> None:
        """Append newly read events and wake whoever waits for a change."""
        if events:
            self.events += events
            self.updated.set()
            self.updated = anyio.Event()

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()`` holds or the run has ended (bounded by the caller)."""
        while not done() and self.status not in TERMINAL_STATUSES:
            await self.updated.wait()

    @property
    def tokens(self) -> int:
        return sum(1 for event in self.events if event.type == "token")

    @property
    def status(self) -> str:
        if self.events and self.events[-1].type in TERMINAL_EVENTS:
            return TERMINAL_EVENTS[self.events[-1].type]
        return "running" if self.events else "starting"

    def words(self) -> list[str]:
        """The tokens streamed so far."""
        return [
            str(event.payload.get("text", ""))
            for event in self.events
            if event.type == "token" and isinstance(event.payload, dict)
        ]


_STATUS_STYLE: Final = {
    "succeeded": "green",
    "canceled": "yellow",
    "failed": "red",
    "timed_out": "red",
    "running": "cyan",
    "starting": "dim",
}


def _bar(done: int, total: int, width: int = 10) -> Text:
    filled = done * width // total
    return (
        Text("━" * filled, style="cyan")
        + Text("━" * (width - filled), style="grey35")
        + Text(f" {done:>2}/{total}")
    )


def _live_table(runs: list[_Run]) -> Table:
    table = Table(title="five chat runs, their events as they are committed")
    table.add_column("run", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("events", justify="right", no_wrap=True)
    table.add_column("tokens", no_wrap=True)
    table.add_column("latest words", no_wrap=True, max_width=28, overflow="ellipsis")
    for run in runs:
        status = run.status
        table.add_row(
            f"#{run.number}",
            Text(status, style=_STATUS_STYLE.get(status, "")),
            str(len(run.events)),
            _bar(run.tokens, _TOKENS),
            Text(" ".join(run.words()[-4:]), style="dim"),
        )
    return table


def _display(runs: list[_Run], happenings: list[str]) -> Group:
    return Group(_live_table(runs), *happenings)


def _tree(snapshot: SupervisorSnapshot, label: str) -> Tree:
    tree = Tree(f"[bold]{label}[/] ({snapshot.strategy})")
    for child in snapshot.children:
        restarts = f", restarts {child.restarts}" if child.restarts else ""
        text = f"{child.id} [dim]{child.actor or '-'} {child.state}{restarts}[/]"
        if child.subtree is not None and child.subtree.children:
            branch = _tree(child.subtree, child.id)
            branch.label = text
            tree.add(branch)
        else:
            tree.add(text)
    return tree


async def _follow(node: Node, run: _Run) -> None:
    """Keep ``run.events`` up to date, woken by the node's listener."""
    with node.listener.watch(run.run_id) as watch:
        while run.status not in TERMINAL_STATUSES:
            after = run.events[-1].seq if run.events else 0
            run.add(await node.store.read_events(run.run_id, after=after))
            if run.status not in TERMINAL_STATUSES:
                await watch.wait()


async def _kill_mid_stream(node: Node, run: _Run, happenings: list[str]) -> None:
    await run.wait_until(lambda: run.tokens >= _KILL_AT)
    actor = node.registry.whereis(("run", run.run_id))
    if actor is None or run.status in TERMINAL_STATUSES:
        happenings.append(f" #{run.number}  ended before the kill")
        return
    killed_at = run.events[-1].seq
    actor.kill()  # no cleanup: as if the actor crashed mid-stream
    happenings.append(
        f" [red]#{run.number}  its run actor is killed after seq {killed_at}[/]"
        " (no cleanup, as if it crashed)"
    )
    await run.wait_until(lambda: run.events[-1].seq > killed_at)
    happenings.append(
        f" [green]#{run.number}  its supervisor started a new actor: it replayed the log and"
        f" went on at seq {killed_at + 1}[/]"
    )


async def _cancel_mid_stream(node: Node, run: _Run, happenings: list[str]) -> None:
    await run.wait_until(lambda: run.tokens >= _CANCEL_AT)
    request = await node.cancel(run.run_id, reason="the demo cancels it")
    if request.requested:
        happenings.append(f" [yellow]#{run.number}  cancel requested (seq {request.seq})[/]")


def _summary(runs: list[_Run], attempts: dict[UUID, list[str]], chains: dict[UUID, bool]) -> Table:
    table = Table(title="summary")
    for column in ("run", "status", "events", "attempts", "recovered", "tokens once", "chain"):
        table.add_column(column, justify="right" if column != "status" else "left")
    for run in runs:
        indexes = [
            event.payload.get("index")
            for event in run.events
            if event.type == "token" and isinstance(event.payload, dict)
        ]
        once = indexes == list(range(len(indexes)))
        recovered = "lost" in attempts[run.run_id]
        table.add_row(
            f"#{run.number}",
            Text(run.status, style=_STATUS_STYLE.get(run.status, "")),
            str(len(run.events)),
            f"{len(attempts[run.run_id])}: {', '.join(attempts[run.run_id])}",
            "yes" if recovered else "no",
            "yes" if once else "NO",
            "ok" if chains[run.run_id] else "BROKEN",
        )
    return table


def _clean(run: _Run) -> bool:
    seqs = [event.seq for event in run.events]
    terminal = [event for event in run.events if event.type in TERMINAL_EVENTS]
    indexes = [
        event.payload.get("index")
        for event in run.events
        if event.type == "token" and isinstance(event.payload, dict)
    ]
    return (
        seqs == list(range(1, len(seqs) + 1))
        and len(terminal) == 1
        and terminal[0] is run.events[-1]
        and indexes == list(range(len(indexes)))
    )


async def run_demo(config: NodeConfig, console: Console | None = None) -> int:
    """Run the demo with ``config`` (its DSN, or the embedded server); return the exit
    status: 0 when every run ended as shown and every check held."""
    out = console if console is not None else Console()
    config = config.with_changes(node_name="demo", port=0)
    where = (
        f"PostgreSQL at {config.store.redacted_dsn()}"
        if config.store.dsn is not None
        else f"the embedded PostgreSQL in {config.store.pg_data_dir}"
    )
    out.rule("[bold]Warden demo[/]: one node, five chat runs, a crash and a cancel")
    out.print(f"Starting a node on {where} (the very first start creates it: a few seconds).")
    started = time.monotonic()
    async with Node(config) as node:
        out.print(
            f"Node [bold]{node.node_id}[/] up in {time.monotonic() - started:.2f} s: store,"
            " listener, membership, janitor, sessions, runs and gateway."
        )
        runs: list[_Run] = []
        for number, prompt in enumerate(_PROMPTS, start=1):
            started_run, _ = await node.start_run(
                owner="demo",
                run_type="chat",
                input={"prompt": prompt, "tokens": _TOKENS, "rate": _RATE},
            )
            runs.append(_Run(number, started_run.run_id, prompt))
        tree = node.tree()  # while the five runs stream
        out.print(
            f"Started five chat runs. Run #{_KILLED + 1}'s actor will be killed after"
            f" {_KILL_AT} tokens, run #{_CANCELLED + 1} cancelled after {_CANCEL_AT}.\n"
        )
        happenings: list[str] = []
        with Live(_display(runs, happenings), console=out, refresh_per_second=8) as live:

            async def refresh() -> None:
                while True:
                    live.update(_display(runs, happenings))
                    await anyio.sleep(0.1)

            with anyio.fail_after(_RUNS_TIMEOUT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(refresh)
                    async with anyio.create_task_group() as script:
                        for run in runs:
                            script.start_soon(_follow, node, run)
                        script.start_soon(_kill_mid_stream, node, runs[_KILLED], happenings)
                        script.start_soon(_cancel_mid_stream, node, runs[_CANCELLED], happenings)
                    tasks.cancel_scope.cancel()
            live.update(_display(runs, happenings))
        # A run actor records how its attempt ended when it releases the lease, one
        # round trip after its terminal event: the summary reads the attempts once every
        # run's executor has let go (it read "lost, None" for a run caught in between).
        with anyio.fail_after(_RUNS_TIMEOUT):
            await node.wait_idle()
        attempts: dict[UUID, list[str]] = {
            run.run_id: [str(a.outcome) for a in await node.store.list_attempts(run.run_id)]
            for run in runs
        }
        chains = {run.run_id: (await node.store.verify_chain(run.run_id)).ok for run in runs}
    out.print()
    out.print("The node's supervision tree while the runs streamed:")
    out.print(_tree(tree, "node"))
    out.print(_summary(runs, attempts, chains))
    expected = ["succeeded"] * len(runs)
    expected[_CANCELLED] = "canceled"
    ok = (
        [run.status for run in runs] == expected
        and all(_clean(run) for run in runs)
        and all(chains.values())
        and "lost" in attempts[runs[_KILLED].run_id]
    )
    if not ok:
        out.print("[red]Unexpected outcome[/]: see the summary above.")
        return 1
    out.print(
        "[green]Done.[/] Every log is gap-free with one terminal event, every token was"
        " written once, every hash chain verifies, and the killed run resumed from its log."
    )
    return 0
