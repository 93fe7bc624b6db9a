"""Monitors, links and what happens to them when an actor stops for good.

A monitor is one-way and one-shot: the watcher gets one ``Down`` when the target stops.
A link is two-way: when either end stops, the other gets an ``Exit``; an abnormal exit
stops a peer that does not trap exits. Both watch the *ref*: a supervised child that is
restarted has not stopped, so its monitors and links stay in place.

Every monitor or link reserves a notification slot in the watcher's mailbox when it is
set up, so the notification can always be delivered without waiting or dropping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from actors._messages import Down, Exit, ExitReason

if TYPE_CHECKING:
    from actors._mailbox import Mailbox

__all__ = ["Monitor", "demonitor", "link", "monitor", "release_watches", "unlink"]


@final
class Monitor:
    """The token of one monitor; pass it to ``Actor.demonitor``."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"<Monitor of {self.target}>"


def monitor(watcher: Mailbox, target: Mailbox) -> Monitor:
    """Deliver one ``Down`` to ``watcher`` when ``target`` stops (at once if it has).

    Raises:
        TooManyWatches: ``watcher`` has no notification slot left.
    """
    watcher.reserve_notice()
    token = Monitor(target.label)
    reason = target.exit_reason
    if reason is not None:
        watcher.put_notice(Down(target.ref, reason))
        return token
    if target._monitored_by is None:
        target._monitored_by = {}
    if watcher._watching is None:
        watcher._watching = {}
    target._monitored_by[token] = watcher
    watcher._watching[token] = target
    return token


def demonitor(watcher: Mailbox, token: Monitor) -> None:
    """Remove a monitor. A ``Down`` already delivered stays in the mailbox."""
    target = watcher._watching.pop(token, None) if watcher._watching else None
    if target is None:
        return
    if target._monitored_by is not None:
        target._monitored_by.pop(token, None)
    watcher.release_notice()


def link(a: Mailbox, b: Mailbox) -> None:
    """Link two actors both ways. Linking to a stopped actor delivers its ``Exit`` now.

    Raises:
        TooManyWatches: either mailbox has no notification slot left.
    """
    if a is b or (a._links is not None and b in a._links):
        return
    a.reserve_notice()
    reason = b.exit_reason
    if reason is not None:
        a.put_notice(Exit(b.ref, reason))
        return
    try:
        b.reserve_notice()
    except BaseException:
        a.release_notice()
        raise
    if a._links is None:
        a._links = set()
    if b._links is None:
        b._links = set()
    a._links.add(b)
    b._links.add(a)


def unlink(a: Mailbox, b: Mailbox) -> None:
    """Remove a link; no error if there is none."""
    if a._links is None or b not in a._links:
        return
    a._links.discard(b)
    a.release_notice()
    if b._links is not None and a in b._links:
        b._links.discard(a)
        b.release_notice()


def release_watches(mailbox: Mailbox, reason: ExitReason) -> None:
    """Notify monitors and links that ``mailbox``'s actor stopped; drop its own watches.

    Called once, right after the mailbox closed for good.
    """
    monitored_by = mailbox._monitored_by
    mailbox._monitored_by = None
    for token, watcher in (monitored_by or {}).items():
        if watcher._watching is not None:
            watcher._watching.pop(token, None)
        if watcher.closed:
            continue
        watcher.put_notice(Down(mailbox.ref, reason))
    links = mailbox._links
    mailbox._links = None
    for peer in links or ():
        if peer._links is not None:
            peer._links.discard(mailbox)
        if peer.closed:
            continue
        peer.put_notice(Exit(mailbox.ref, reason))
    watching = mailbox._watching
    mailbox._watching = None
    for token, target in (watching or {}).items():
        if target._monitored_by is not None:
            target._monitored_by.pop(token, None)
    for registry, name in mailbox._names or ():
        registry._forget(name, mailbox.ref)
    mailbox._names = None
