"""The actor kernel: actors, refs, three-lane mailboxes, monitors, links and a registry.

Backend-neutral: runs on asyncio and trio through anyio, and never imports runtime/ or
transport/. Time comes from the running backend's clock (``anyio.current_time()``).

    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Counter())
        await ref.tell(Increment())
        total = await ref.ask(Total(), timeout=1.0)
        await ref.stop()
"""

from actors._actor import Actor, Incarnation, StartFailure, new_label, run_incarnation, spawn
from actors._links import Monitor
from actors._mailbox import (
    Lane,
    LaneConfig,
    LaneStatistics,
    Mailbox,
    MailboxConfig,
    MailboxStatistics,
    PressureSignal,
)
from actors._messages import (
    Cancel,
    Crashed,
    Down,
    Exit,
    ExitReason,
    IntensityExceeded,
    Killed,
    LeaseLost,
    LinkedExit,
    Normal,
    Request,
    Shutdown,
)
from actors._ref import ActorRef
from actors._registry import Registry
from actors.errors import (
    ActorCrashed,
    ActorError,
    ActorKilled,
    ActorStartFailed,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    MessageRefused,
    NameTaken,
    RegistryFull,
    TooManyWatches,
    WardenError,
)

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorKilled",
    "ActorRef",
    "ActorStartFailed",
    "ActorStopped",
    "AskTimeout",
    "Cancel",
    "Crashed",
    "Down",
    "Exit",
    "ExitReason",
    "Incarnation",
    "IntensityExceeded",
    "Killed",
    "Lane",
    "LaneConfig",
    "LaneStatistics",
    "LeaseLost",
    "LinkedExit",
    "Mailbox",
    "MailboxConfig",
    "MailboxFull",
    "MailboxStatistics",
    "MessageRefused",
    "Monitor",
    "NameTaken",
    "Normal",
    "PressureSignal",
    "Registry",
    "RegistryFull",
    "Request",
    "Shutdown",
    "StartFailure",
    "TooManyWatches",
    "WardenError",
    "new_label",
    "run_incarnation",
    "spawn",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("actors."):
        _obj.__module__ = "actors"
del _name, _obj
