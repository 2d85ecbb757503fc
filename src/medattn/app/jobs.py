"""A bounded job queue with worker threads.

Inference takes seconds, so an upload only creates a ``queued`` case and puts
its id on the queue; a worker runs the pipeline, writes the result files
(atomically), then marks the case ``done`` in one transaction.

Admission is decided before anything is stored: :meth:`JobQueue.admit`
reserves queue places (or raises :class:`QueueFull`, HTTP 503, and nothing is
stored); a reserved place is then either filled by :meth:`JobQueue.submit`
(which never fails) or given back. So an HTTP 202 always means the job runs.

On start-up, cases left ``queued`` or ``running`` by a stopped server are put
back on the queue (beyond the admission limit: they were accepted), so no
accepted upload is lost.

Each worker limits PyTorch to ``cores // workers`` threads, so workers times
PyTorch threads never exceed the cores (oversubscription makes inference tens
of times slower).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterator

from sqlalchemy import select

from medattn.app.db import Case, Database, utcnow

log = logging.getLogger("medattn.app.jobs")


class QueueFull(Exception):
    """No place left in the job queue (answer HTTP 503 with Retry-After)."""


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """PyTorch threads for each of ``workers`` concurrent workers on ``cores`` CPUs (at least 1)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


class Admission:
    """Queue places reserved by :meth:`JobQueue.admit` and not used yet."""

    def __init__(self, n: int) -> None:
        self.left = n


class JobQueue:
    def __init__(self, db: Database, runner: Callable[[str, Callable[[float, str], None]], None],
                 maxsize: int = 32, workers: int = 1) -> None:
        self.db = db
        self.runner = runner
        self.maxsize = maxsize
        self._q: queue.Queue[str | None] = queue.Queue()  # unbounded: admission is counted in _reserved
        self._lock = threading.Lock()
        self._reserved = 0  # places admitted and not yet finished (waiting, being stored, or queued)
        self._threads: list[threading.Thread] = []
        self._workers = workers
        self._stop = threading.Event()

    def start(self) -> None:
        """Requeue the cases a stopped server left unfinished, then start the workers."""
        with self.db.session() as s:
            pending = s.scalars(
                select(Case.id).where(Case.status.in_(("queued", "running"))).order_by(Case.created_at)
            ).all()
            for case in s.scalars(select(Case).where(Case.status == "running")):
                case.status, case.progress, case.message = "queued", 0.0, "requeued after a restart"
        with self._lock:
            self._reserved += len(pending)
        for cid in pending:
            self._q.put(cid)
        if pending:
            log.info("requeued %d unfinished case(s)", len(pending))
        for i in range(self._workers):
            t = threading.Thread(target=self._work, name=f"medattn-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @contextlib.contextmanager
    def admit(self, n: int) -> Iterator[Admission]:
        """Reserve ``n`` places for the body of the ``with``; raise :class:`QueueFull` when there are not.

        The body passes the yielded ticket to :meth:`submit` for each case it stored; places it did not
        use (a refused file, a failed write) are given back when the ``with`` ends.
        """
        with self._lock:
            if self._reserved + n > self.maxsize:
                raise QueueFull
            self._reserved += n
        ticket = Admission(n)
        try:
            yield ticket
        finally:
            with self._lock:
                self._reserved -= ticket.left

    def submit(self, case_id: str, ticket: Admission | None = None) -> None:
        """Queue a case: with a ticket from :meth:`admit` this never fails; without one it may raise QueueFull."""
        if ticket is not None and ticket.left > 0:
            ticket.left -= 1
        else:
            with self._lock:
                if self._reserved + 1 > self.maxsize:
                    raise QueueFull
                self._reserved += 1
        self._q.put(case_id)

    @property
    def pending(self) -> int:
        """Admitted jobs not finished yet (waiting or running)."""
        return self._reserved

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for _ in self._threads:
            self._q.put(None)
        for t in self._threads:
            t.join(timeout)

    def _progress(self, case_id: str) -> Callable[[float, str], None]:
        def update(fraction: float, message: str = "") -> None:
            with self.db.session() as s:
                case = s.get(Case, case_id)
                if case is not None:
                    case.progress = float(min(max(fraction, 0.0), 1.0))
                    if message:
                        case.message = message

        return update

    def _work(self) -> None:
        _limit_torch_threads(self._workers)
        while not self._stop.is_set():
            case_id = self._q.get()
            if case_id is None:
                break
            try:
                with self.db.session() as s:
                    case = s.get(Case, case_id)
                    if case is None or case.status not in ("queued", "running"):
                        continue
                    case.status, case.progress = "running", 0.0
                self.runner(case_id, self._progress(case_id))
            except Exception as exc:  # a failed case must not kill the worker
                # Log the type only: messages may echo file content; never patient data in logs.
                log.error("case %s failed: %s", case_id, type(exc).__name__)
                log.debug("%s", traceback.format_exc())
                with self.db.session() as s:
                    case = s.get(Case, case_id)
                    if case is not None:
                        case.status = "failed"
                        case.message = _failure_message(case, exc)
                        case.finished_at = utcnow()
            finally:
                with self._lock:
                    self._reserved -= 1
                self._q.task_done()


def _limit_torch_threads(workers: int) -> None:
    """Give this worker its share of the cores for PyTorch (intra-op threads)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(threads_per_worker(workers))


def _failure_message(case: Case, exc: BaseException) -> str:
    """What the user sees of a failed job: the file and the reason (the type only for internal errors)."""
    reason = str(exc) if _user_error(exc) else f"internal error ({type(exc).__name__})"
    name = case.input_name or "input"
    return (reason if reason.startswith(name) else f"{name}: {reason}")[:500]


def _user_error(exc: BaseException) -> bool:
    from medattn.errors import MedattnError

    return isinstance(exc, MedattnError)
