"""Actor calls the front gives up on, over Ray Client (marker `cluster`): a call that timed out,
or whose waiting task was cancelled, must not break Ray Client's data thread when the call ends
or the connection does (`swapwatch.cluster.calls`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ray = pytest.importorskip(
    "ray", reason="the cluster test needs Ray: pip install 'swapwatch[ray]' (make test-cluster)"
)
from ray._private import ray_constants  # noqa: E402
from test_cluster import head_with_client_server  # noqa: E402

pytestmark = pytest.mark.cluster

DRIVER = textwrap.dedent(
    """
    import asyncio, sys, time
    import ray
    from swapwatch.cluster.calls import call_result
    from swapwatch.cluster.connect import RayCluster

    cluster = RayCluster(sys.argv[1], "calls", 1.0, None, 1.0, 0.0, None)
    cluster.connect()

    @ray.remote(num_cpus=0)
    class Slow:
        def wait(self, seconds):
            time.sleep(seconds)
            return seconds

    slow = Slow.remote()

    async def main():
        assert await call_result(slow.wait.remote(0), 30) == 0
        try:
            await call_result(slow.wait.remote(60), 0.3)
        except TimeoutError:
            print("timed out", flush=True)
        waiting = asyncio.create_task(call_result(slow.wait.remote(60)))
        await asyncio.sleep(0.3)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        print("cancelled", flush=True)
        began = time.monotonic()
        while await asyncio.to_thread(cluster.connected):
            await asyncio.sleep(0.5)
        print(f"lost after {time.monotonic() - began:.1f} s", flush=True)

    asyncio.run(main())
    cluster.close()
    """
)


# Ray's head leaves its client server's log files open in this (the test's) process.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_calls_given_up_on_leave_ray_clients_connection_able_to_end() -> None:
    pytest.importorskip("grpc", reason="Ray Client needs ray[client]: pip install 'swapwatch[ray]'")
    with head_with_client_server() as (cluster, port):
        env = dict(os.environ, RAY_CLIENT_RECONNECT_GRACE_PERIOD="5")
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, f"ray://127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert driver.stdout is not None
            said = [driver.stdout.readline().strip() for _ in range(2)]
            assert said == ["timed out", "cancelled"], said
            # Both calls still run on the actor when the client server dies.
            cluster.head_node._kill_process_type(
                ray_constants.PROCESS_TYPE_RAY_CLIENT_SERVER, check_alive=False, wait=True
            )
            out, err = driver.communicate(timeout=90)
        finally:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, err[-3000:]
    assert "lost after" in out
    # Before call_result, the data thread died here on a cancelled future, half way through
    # failing the pending calls.
    assert "InvalidStateError" not in err, err[-3000:]
    assert "Exception in thread ray_client_streaming_rpc" not in err, err[-3000:]
