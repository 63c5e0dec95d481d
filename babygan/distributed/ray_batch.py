"""``babygan batch --ray``: a batch's rows on Ray workers, each an actor holding one Session.

The driver (this process) reads the CSV and the photos and sends each row's two photos as
bytes, so workers need no shared disk. A worker runs :func:`babygan.batch.run_row` (predict,
then the files' bytes) and sends the bytes back; the driver writes them exactly as the local
batch does (:func:`babygan.batch.run_batch`: atomic files, the row's done.json last, batch.json).

Rows go to whichever worker is free, one at a time. A worker that dies mid-row (killed, out of
memory, its machine lost) is restarted by Ray (``max_restarts``) and its row is started again,
once, on another worker where there is one; a row that fails with an error is reported, not
retried. Nothing is written twice: a row's files come from the one run that finished it.

    with connected("auto"), RayWorkers(lambda: Session("builtin"), workers=4) as pool:
        rows = run_batch("pairs.csv", "out/", runner=pool.rows)

Ray is imported when first needed, so ``babygan`` works without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babygan import __version__
from babygan.batch import BatchRow, RowOutcome, run_batch
from babygan.distributed.worker import RowWorker, SessionOpener
from babygan.errors import BabyganError
from babygan.pipeline import ChildOptions
from babygan.session import Session

log = logging.getLogger("babygan")

#: a worker process may die and be restarted this many times before it is given up
DEFAULT_MAX_RESTARTS = 3
#: how often the driver wakes while it waits for workers (so that Ctrl-C is seen at once)
_POLL_S = 0.5


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BabyganError("--ray needs Ray: pip install 'babygan[ray]' (or pip install 'ray>=2.9')") from exc
    return ray


@contextlib.contextmanager
def connected(address: str | None = None) -> Iterator[Any]:
    """Ray, connected for the block: to the cluster at ``address`` (``host:port``; ``auto``: the
    one this machine has joined), or to a Ray instance started here (None or ``local``) and
    stopped after. Already connected (``ray.init`` called by the caller): that connection."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    local = address in (None, "", "local")
    if local:
        # a private instance: no dashboard, and Ray's usage report stays off unless asked for
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(
            address="local" if local else address,
            include_dashboard=False if local else None,
            log_to_driver=False,  # the workers' chatter stays in their logs; rows report their errors
            logging_level=logging.ERROR,  # not its notes on the console
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray instance" if local else f"the Ray cluster at {address}"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BabyganError(f"cannot start or reach {where}: {first}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class _Job:
    row: BatchRow  # its photo paths resolved, as the Session names them
    original: BatchRow  # the row as read, filled in at the end
    retries: int = 0
    died_on: int | None = None  # the worker it was running on when that died


class RayWorkers:
    """Worker actors on the connected Ray cluster, each holding a Session; ``rows`` is a
    :data:`babygan.batch.RowRunner`. Workers start with the first rows and last until ``close``.

    session: makes each worker's Session, on the worker (pickled: ``Session``, a lambda...).
    workers: how many (None: the cluster's GPUs / gpus_per_worker, else its CPUs / cpus_per_worker;
    never more than the rows to do). gpus_per_worker: None: 1 where the cluster has GPUs, else 0.
    max_restarts: how many times Ray restarts a worker that died, before it is given up.
    """

    def __init__(
        self,
        session: SessionOpener = Session,
        *,
        workers: int | None = None,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float | None = None,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
    ) -> None:
        if workers is not None and workers < 1:
            raise BabyganError(f"workers={workers}: must be at least 1")
        if cpus_per_worker <= 0 or (gpus_per_worker or 0) < 0:
            raise BabyganError("cpus_per_worker must be > 0 and gpus_per_worker >= 0")
        self.session = session
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_restarts = max_restarts
        self._actors: list[Any] = []
        self._deaths: list[int] = []
        self._idle: list[int] = []
        self._starting: dict[Any, int] = {}  # ready() call -> worker
        self._abandoned: dict[Any, int] = {}  # a row left running by a run stopped early -> worker
        self._gone: set[int] = set()  # given up
        self._errors: list[str] = []  # why workers could not start
        self._ready = False  # whether a worker has started

    def __enter__(self) -> RayWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers ---------------------------------------------------------------

    def _wanted(self, rows: int) -> int:
        ray = import_ray()
        have = ray.cluster_resources()
        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if have.get("GPU", 0) >= 1 else 0.0
        self.gpus_per_worker = gpus
        n = self.workers
        if n is None:
            n = (
                int(have.get("GPU", 0) // gpus)
                if gpus > 0
                else int(have.get("CPU", 1) // self.cpus_per_worker)
            )
        return max(1, min(n, rows))

    def _grow(self, rows: int) -> None:
        """Start workers up to what ``rows`` rows want (each loads its models in ``ready``)."""
        ray = import_ray()
        want = self._wanted(rows)
        if len(self._actors) >= want:
            return
        actor = ray.remote(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=self.max_restarts,
            max_task_retries=0,  # a row whose worker died is started again by the driver, which counts it
        )(RowWorker)
        while len(self._actors) < want:
            i = len(self._actors)
            self._actors.append(actor.remote(self.session))
            self._deaths.append(0)
            self._starting[self._actors[i].ready.remote()] = i
        log.info(
            "ray: %d worker(s), %g CPU and %g GPU each", want, self.cpus_per_worker, self.gpus_per_worker
        )

    def _live(self) -> list[int]:
        return [i for i in range(len(self._actors)) if i not in self._gone]

    def _died(self, i: int, exc: BaseException) -> None:
        """Worker ``i`` died: wait for Ray's restart (its ``ready`` answers), or give it up."""
        self._deaths[i] += 1
        log.warning("ray: worker %d died (%s)", i, _first_line(exc))
        if self._deaths[i] > self.max_restarts:
            self._gone.add(i)
            self._errors.append(f"worker {i} died {self._deaths[i]} times")
        else:
            self._starting[self._actors[i].ready.remote()] = i

    def _freed(self, ref: Any) -> None:
        """A worker's ``ready`` answered, or a row it was left running ended: free it, or not."""
        ray = import_ray()
        if ref in self._abandoned:
            i = self._abandoned.pop(ref)
            try:
                ray.get(ref)
            except _worker_lost() as exc:
                self._died(i, exc)
                return
            except ray.exceptions.RayError:
                pass
            self._idle.append(i)
            return
        i = self._starting.pop(ref)
        try:
            info = ray.get(ref)
        except _worker_lost() as exc:
            self._died(i, exc)
            return
        except ray.exceptions.RayError as exc:  # its Session could not open: a missing file...
            self._gone.add(i)
            self._errors.append(_cause(exc))
            # said now while others work; else the one error that ends the run says it
            say = log.warning if self._ready else log.debug
            say("ray: worker %d cannot start: %s", i, _cause(exc))
            return
        if info.get("babygan") != __version__:
            log.warning(
                "ray: worker %s runs babygan %s, this driver %s", info["worker"], info["babygan"], __version__
            )
        log.debug("ray: worker %d ready: %s", i, info["worker"])
        self._ready = True
        self._idle.append(i)

    def close(self) -> None:
        """Stop the workers (their photo copies removed where they are idle)."""
        if not self._actors:
            return
        ray = import_ray()
        live = [self._actors[i] for i in self._live()]
        with contextlib.suppress(Exception):
            ray.wait([a.close.remote() for a in live], num_returns=len(live), timeout=2.0)
        for a in self._actors:  # those given up too: one whose Session failed still holds its CPUs
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        self._actors, self._deaths, self._idle, self._gone = [], [], [], set()
        self._starting, self._abandoned = {}, {}

    # -- rows --------------------------------------------------------------------

    def rows(
        self, rows: Sequence[BatchRow], options: ChildOptions, output_dir: Path
    ) -> Iterator[tuple[BatchRow, RowOutcome]]:
        """Run ``rows`` on the workers; yield ``(row, outcome)`` as each ends (a RowRunner)."""
        ray = import_ray()
        jobs = deque(_job(r) for r in rows)
        photos = _Photos(ray, [p for j in jobs for p in (j.row.father, j.row.mother)])
        running: dict[Any, tuple[int, _Job]] = {}
        self._grow(len(jobs))
        ended: list[tuple[BatchRow, RowOutcome]] = []
        try:
            while True:
                ended += self._hand_out(jobs, running, photos, options, output_dir)
                # the free workers have their next rows before the driver writes what ended
                while ended:
                    yield ended.pop(0)
                if not jobs and not running:
                    return
                if not running and not self._starting and not self._abandoned:
                    why = "; ".join(dict.fromkeys(self._errors)) or "every worker is gone"
                    raise BabyganError(f"no Ray worker could run the rows: {why}")
                waiting = [*running, *self._starting, *self._abandoned]
                ready, _ = ray.wait(waiting, num_returns=1, timeout=_POLL_S)
                for ref in ready:
                    if ref not in running:
                        self._freed(ref)
                        continue
                    i, job = running.pop(ref)
                    outcome = self._outcome(ref, i, job, jobs)
                    if outcome is not None:  # None: its worker died, the row waits to start again
                        photos.release(job.row)
                        outcome.retries = job.retries
                        ended.append((job.original, outcome))
        finally:
            # stopped early (Ctrl-C, an error): rows still running end unseen, and free their workers
            for ref, (i, _) in running.items():
                self._abandoned[ref] = i

    def _hand_out(
        self,
        jobs: deque[_Job],
        running: dict[Any, tuple[int, _Job]],
        photos: _Photos,
        options: ChildOptions,
        output_dir: Path,
    ) -> list[tuple[BatchRow, RowOutcome]]:
        """Give each free worker a row, until no worker is free or no row is left; the rows
        that end here (a photo missing on the driver) are returned."""
        ended = []
        assigned = True
        while assigned:
            assigned = False
            for i, job in self._assign(jobs):
                assigned = True
                try:
                    data = (photos.ref(job.row.father), photos.ref(job.row.mother))
                except BabyganError as exc:
                    self._idle.append(i)
                    photos.release(job.row)
                    ended.append((job.original, RowOutcome(error=str(exc))))
                    continue
                running[self._actors[i].run.remote(job.row, options, output_dir, *data)] = (i, job)
        return ended

    def _assign(self, jobs: deque[_Job]) -> Iterator[tuple[int, _Job]]:
        """(free worker, job) pairs; a retried row goes to another worker than the one it died
        on while another is alive."""
        live = len(self._live())
        for i in list(self._idle):
            job = next((j for j in jobs if j.died_on != i or live == 1), None)
            if job is None:
                continue
            jobs.remove(job)
            self._idle.remove(i)
            yield i, job

    def _outcome(self, ref: Any, i: int, job: _Job, jobs: deque[_Job]) -> RowOutcome | None:
        """The row's outcome (worker ``i`` free again, unless it died); None when its worker died
        and the row waits to be started again."""
        ray = import_ray()
        try:
            outcome = ray.get(ref)
            self._idle.append(i)
            return outcome
        except _worker_lost() as exc:
            self._died(i, exc)
            if job.retries >= 1:  # died twice with this row: the row is the likely cause
                return RowOutcome(error=f"its worker died twice running it: {_first_line(exc)}")
            job.retries += 1
            job.died_on = i
            jobs.appendleft(job)
            return None
        except ray.exceptions.RayError as exc:  # not an error of the row's own (run_row returns those)
            self._idle.append(i)
            return RowOutcome(error=_cause(exc))


class _Photos:
    """The photos' bytes in Ray's object store: each read once, dropped when no row needs it."""

    def __init__(self, ray: Any, paths: Sequence[Path]) -> None:
        self._ray = ray
        self._uses = Counter(paths)
        self._refs: dict[Path, Any] = {}

    def ref(self, path: Path) -> Any:
        if path not in self._refs:
            if not path.is_file():
                raise BabyganError(f"{path}: no such file")  # as the Session says it
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise BabyganError(f"{path}: cannot read ({exc.strerror or exc})") from exc
            self._refs[path] = self._ray.put(data)
        return self._refs[path]

    def release(self, row: BatchRow) -> None:
        for path in (row.father, row.mother):
            self._uses[path] -= 1
            if self._uses[path] <= 0:
                self._refs.pop(path, None)


def _job(row: BatchRow) -> _Job:
    resolved = dataclasses.replace(
        row, father=Path(row.father).expanduser().resolve(), mother=Path(row.mother).expanduser().resolve()
    )
    return _Job(resolved, row)


def _worker_lost() -> tuple[type[BaseException], ...]:
    """Ray's errors for a worker process that is gone (killed, out of memory, its node lost)."""
    ex = import_ray().exceptions
    return (ex.RayActorError, ex.WorkerCrashedError, ex.OutOfMemoryError, ex.NodeDiedError)


def _cause(exc: BaseException) -> str:
    """The message of the error behind a Ray error (a BabyganError's own line)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BabyganError):
        return str(cause)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {_first_line(cause)}"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_batch_ray(
    csv_path: str | Path,
    output_dir: str | Path,
    options: ChildOptions | None = None,
    session: SessionOpener = Session,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    resume: bool = False,
    settings: Mapping[str, Any] | None = None,
    on_start: Callable[[Sequence[BatchRow]], None] | None = None,
    on_row: Callable[[BatchRow], None] | None = None,
) -> list[BatchRow]:
    """:func:`babygan.batch.run_batch` with the rows on Ray workers (see :class:`RayWorkers`):
    on the cluster at ``address``, or a Ray instance started here and stopped after (None)."""
    with (
        connected(address),
        RayWorkers(
            session,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            max_restarts=max_restarts,
        ) as pool,
    ):
        return run_batch(
            csv_path,
            output_dir,
            options,
            resume=resume,
            settings=settings,
            runner=pool.rows,
            on_start=on_start,
            on_row=on_row,
        )
