import anyio
import pytest

from actors import Actor, AskTimeout, spawn

pytestmark = pytest.mark.anyio


class Sleeper(Actor[float]):
    async def handle(self, message: float) -> float:
        await anyio.sleep(message)
        return message


async def test_virtual_time() -> None:
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Sleeper())
        start = anyio.current_time()
        assert await ref.ask(100.0, timeout=200) == 100.0
        assert anyio.current_time() - start == 100.0
        with pytest.raises(AskTimeout):
            await ref.ask(100.0, timeout=50)
        assert anyio.current_time() - start == 150.0
        await ref.stop(timeout=100)
