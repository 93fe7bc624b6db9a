"""The actor kernel: actors, refs, three-lane mailboxes, monitors, links and a registry.

Backend-neutral: runs on asyncio and trio, and never imports runtime/ or transport/
(nor trio, unless trio is the running backend). Time comes from the running backend's
clock (``anyio.current_time()``). Kernel extensions build on :mod:`actors.hosting`.

    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Counter())
        await ref.tell(Increment())
        total = await ref.ask(Total(), timeout=1.0)
        await ref.stop()
"""

from actors._actor import Actor
from actors._mailbox import (
    Lane,
    LaneConfig,
    LaneStatistics,
    MailboxConfig,
    MailboxStatistics,
    PressureSignal,
)
from actors._messages import (
    IGNORE,
    Crashed,
    Down,
    Exit,
    ExitReason,
    Ignore,
    Killed,
    LinkedExit,
    Normal,
    Request,
    Shutdown,
)
from actors._process import Monitor
from actors._public import fixup_module_metadata as _fixup_module_metadata
from actors._ref import ActorRef
from actors._registry import Registry
from actors._spawn import spawn
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
    StartIgnored,
    StopTimeout,
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
    "Crashed",
    "Down",
    "Exit",
    "ExitReason",
    "IGNORE",
    "Ignore",
    "Killed",
    "Lane",
    "LaneConfig",
    "LaneStatistics",
    "LinkedExit",
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
    "StartIgnored",
    "StopTimeout",
    "TooManyWatches",
    "WardenError",
    "spawn",
]

_fixup_module_metadata("actors", globals())
