"""Worker processes: every request's work runs in one, off the event loop, under a time limit.

A thread cannot be stopped, so the work runs in a pool of processes (started
with ``spawn``, so they share nothing with the server's threads).  Each worker
takes one job at a time over a pipe.  A job that runs past the time limit
gets its worker killed and replaced; the server keeps serving the others.  At
most ``size`` jobs run at once; a request that finds every worker busy waits
for one up to the time limit, then is told the server is busy.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Busy", "TimeLimit", "WorkerDied", "WorkerPool"]

STARTUP_LIMIT = 120.0  # seconds a fresh worker may take to import eingrad (not counted in a job's limit)
MAX_BYTES = 256 << 20  # EINGRAD_MAX_BYTES in the workers: the largest array one request may allocate


class TimeLimit(Exception):
    """The job ran past the time limit; its worker was killed."""


class Busy(Exception):
    """Every worker stayed busy for the whole time limit."""


class WorkerDied(Exception):
    """The worker exited in the middle of the job (killed for memory, say)."""


def _worker_main(conn, max_bytes: int) -> None:  # pragma: no cover - runs in the child
    """The worker's loop: ``(kind, payload)`` in, ``("ok", result)`` or ``("error", error)`` out."""
    # Ctrl-C in the terminal reaches the whole process group: the server stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["EINGRAD_MAX_BYTES"] = str(max_bytes)
    from eingrad.errors import EingradError

    from .work import derive, error_json, parse_info

    jobs = {"derive": derive, "parse": parse_info}
    conn.send(("ready", os.getpid()))
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", jobs[kind](payload))
        except EingradError as err:
            reply = ("error", error_json(err))
        except MemoryError as err:
            reply = ("error", {**error_json(err), "type": "TooLargeError",
                               "message": "the request needs more memory than the playground allows"})
        except RecursionError:
            reply = ("error", {**error_json(RecursionError()), "type": "TooLargeError",
                               "message": "the program is nested too deeply for the playground"})
        except Exception as err:  # a bug in eingrad: reported, never hidden
            reply = ("internal", {**error_json(err), "type": "InternalError",
                                  "message": f"{type(err).__name__}: {err}"})
        conn.send(reply)


class _Worker:
    """One process and the parent's end of its pipe."""

    def __init__(self, context, max_bytes: int) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, max_bytes), daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    def wait_ready(self) -> None:
        """Wait for the worker to have imported eingrad (blocks)."""
        if not self.ready:
            if not self.conn.poll(STARTUP_LIMIT):
                raise WorkerDied("the worker did not start")
            self._recv()
            self.ready = True

    def call(self, kind: str, payload: Any, time_limit: float) -> tuple[str, Any]:
        """Run one job (in a thread of the server: this blocks)."""
        self.wait_ready()  # a replacement may still be starting: not counted in the job's time
        self.conn.send((kind, payload))
        if not self.conn.poll(time_limit):
            raise TimeLimit
        return self._recv()

    def _recv(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise WorkerDied("the worker stopped in the middle of the job") from None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


class WorkerPool:
    """``size`` worker processes; :meth:`run` gives one a job and waits at most ``time_limit`` seconds."""

    def __init__(self, size: int = 2, time_limit: float = 10.0, max_bytes: int = MAX_BYTES) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.time_limit = time_limit
        self.max_bytes = max_bytes
        self._context = multiprocessing.get_context("spawn")
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="eingrad-web")
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self.replaced = 0  # workers killed and replaced (over time, or died)

    def _new_worker(self) -> _Worker:
        worker = _Worker(self._context, self.max_bytes)
        with self._lock:
            self._all.add(worker)
        return worker

    async def start(self) -> None:
        self._idle = asyncio.Queue()
        loop = asyncio.get_running_loop()
        workers = [await loop.run_in_executor(self._threads, self._new_worker) for _ in range(self.size)]
        # Serve once every worker is ready, so that the first requests' time limits are fair.
        await asyncio.gather(*(loop.run_in_executor(self._threads, w.wait_ready) for w in workers))
        for worker in workers:
            self._idle.put_nowait(worker)

    async def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.kill()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def run(self, kind: str, payload: Any) -> tuple[str, Any]:
        """``("ok", result)``, ``("error", error)`` or ``("internal", error)``; raises
        :class:`TimeLimit`, :class:`Busy` or :class:`WorkerDied`."""
        assert self._idle is not None, "start() the pool first"
        try:
            worker = await asyncio.wait_for(self._idle.get(), timeout=self.time_limit)
        except asyncio.TimeoutError:
            raise Busy from None
        loop = asyncio.get_running_loop()
        try:  # the time limit counts from when a worker takes the job, not the wait for one
            reply = await loop.run_in_executor(self._threads, worker.call, kind, payload, self.time_limit)
        except BaseException:  # over time, died, or cancelled mid-job (its reply would confuse the next job)
            await self._replace(worker)
            raise
        self._idle.put_nowait(worker)
        return reply

    async def _replace(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        self.replaced += 1
        with self._lock:
            self._all.discard(worker)
        await loop.run_in_executor(None, worker.kill)
        self._idle.put_nowait(await loop.run_in_executor(None, self._new_worker))
