"""The hosting API: what kernel extensions such as ``supervisors`` are built on.

Applications spawn actors with :func:`actors.spawn` or a supervisor and never need this
module. An extension that runs actors itself uses:

- :class:`Process` — what a ref stands for: a :class:`Mailbox` (lanes only) and the
  incarnations run behind it one at a time, how the last one exited, monitors, links
  and names; :func:`process_of` gives the process behind a ref, :func:`new_label` a
  label for a new one.
- :class:`Incarnation` — one run of one actor instance behind a process, with
  ``kill()``, ``wait_started()`` and ``wait_done()``.
- :class:`ActorHost` — the task group incarnations run in (``async with``).
- The actor hooks :meth:`~actors.Actor.lifespan` (a context around ``on_start`` and the
  message loop) and :meth:`~actors.Actor.on_notice` (notifications the extension posts
  to its own mailbox with ``Mailbox.put_notice`` or ``Mailbox.notify_at``).
- :func:`bounded_repr` and :func:`bounded`, so error reports stay bounded (DESIGN §11),
  and :func:`fixup_module_metadata`, so a package's classes report its public name.

See docs/kernel.md, "Hosting API".
"""

from actors._host import ActorHost
from actors._incarnation import Incarnation
from actors._mailbox import Mailbox
from actors._process import Process, new_label
from actors._public import fixup_module_metadata
from actors._ref import process_of
from actors._text import MAX_REPORT, bounded, bounded_repr

__all__ = [
    "ActorHost",
    "Incarnation",
    "MAX_REPORT",
    "Mailbox",
    "Process",
    "bounded",
    "bounded_repr",
    "fixup_module_metadata",
    "new_label",
    "process_of",
]

fixup_module_metadata("actors.hosting", globals())
