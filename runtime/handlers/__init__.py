"""Handlers shipped with Warden, registered under the ``warden.handlers`` entry points.

* ``echo`` (:func:`runtime.handlers.echo.echo`): emits each frame back.
* ``chat`` (:func:`runtime.handlers.chat.chat`): a simulated agent turn: tool calls as
  tasks, seeded token streaming, a memory write and a final message.

The demo, the tests, the benchmark and the chaos scripts run them.
"""

from runtime.handlers.chat import chat
from runtime.handlers.echo import echo

__all__ = ["chat", "echo"]
