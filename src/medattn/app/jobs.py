"""A bounded job queue with worker threads.

Inference takes seconds, so an upload only creates a ``queued`` case and puts
its id on the queue; a worker runs the pipeline, writes the result files
(atomically), then marks the case ``done`` in one transaction. When the queue
is full, new uploads are refused (HTTP 503) instead of piling up.

On start-up, cases left ``queued`` or ``running`` by a stopped server are put
back on the queue, so no accepted upload is lost.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import traceback
from collections.abc import Callable

from sqlalchemy import select

from medattn.app.db import Case, Database, utcnow

log = logging.getLogger("medattn.app.jobs")


class QueueFull(Exception):
    pass


class JobQueue:
    def __init__(self, db: Database, runner: Callable[[str, Callable[[float, str], None]], None],
                 maxsize: int = 32, workers: int = 1) -> None:
        self.db = db
        self.runner = runner
        self._q: queue.Queue[str | None] = queue.Queue(maxsize=maxsize)
        self._threads: list[threading.Thread] = []
        self._workers = workers
        self._stop = threading.Event()

    def start(self) -> None:
        with self.db.session() as s:
            pending = s.scalars(
                select(Case.id).where(Case.status.in_(("queued", "running"))).order_by(Case.created_at)
            ).all()
            for case in s.scalars(select(Case).where(Case.status == "running")):
                case.status, case.progress, case.message = "queued", 0.0, "requeued after a restart"
        for i in range(self._workers):
            t = threading.Thread(target=self._work, name=f"medattn-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        for cid in pending:
            self._q.put(cid)  # may block briefly if more are pending than the queue holds
        if pending:
            log.info("requeued %d unfinished case(s)", len(pending))

    def submit(self, case_id: str) -> None:
        try:
            self._q.put_nowait(case_id)
        except queue.Full:
            raise QueueFull from None

    @property
    def pending(self) -> int:
        return self._q.qsize()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for _ in self._threads:
            with contextlib.suppress(queue.Full):
                self._q.put_nowait(None)
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
                        case.message = str(exc)[:500] if _user_error(exc) else f"internal error ({type(exc).__name__})"
                        case.finished_at = utcnow()
            finally:
                self._q.task_done()


def _user_error(exc: BaseException) -> bool:
    from medattn.errors import MedattnError

    return isinstance(exc, MedattnError)
