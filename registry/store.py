"""The tracking store: which URI, a validated client, and writes that survive concurrent writers.

SQLite allows one writer at a time. MLflow already waits 20 s for the lock, but several
processes creating the schema of a new file at once, or find-then-create races (an experiment,
a ladder run, a model version), still fail or duplicate. So: schema creation and every
find-or-create run under an exclusive `flock` on the database's folder, and every MLflow call is
retried with backoff when the database reports it is locked.

A tracking server (or a database URI) is shared by machines, where no file lock reaches. There a
find-or-create settles on one record through `Store.canonical`: the first writer to create a
claim experiment (names are unique in MLflow's database, so exactly one creation succeeds)
binds the key to its record; the others adopt that record and delete their own.

A registration is all-or-nothing from the user's view: each run is written inside
`Store.writing`, which marks it FAILED (and, unless it is resumable, deletes it) on any error or
interrupt, and readers see only FINISHED runs. A run left RUNNING by a killed process (its
writer tag names a dead process of this host) or FAILED is swept away by the next registration.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from taskladder.common.errors import InputError
from taskladder.common.secrets import mask

DEFAULT_URI = "sqlite:///mlflow.db"
URI_ENV_VARS = ("TASKLADDER_TRACKING_URI", "MLFLOW_TRACKING_URI")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_LOCKED_MARKERS = ("database is locked", "database table is locked", "sqlite_busy", "deadlock")
_CONFLICT_MARKERS = ("unique constraint failed", "duplicate key value violates unique constraint")
_RETRY_SECONDS = 120.0
CLAIM_PREFIX = "taskladder-claim-"  # soft-deleted experiments: hidden, their names stay taken
ARTIFACTS = "/mlartifacts/"  # a store's artifacts: <its folder>/mlartifacts/<experiment>
_LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
              ("model_versions", "source"), ("model_versions", "storage_location"))
WRITER_TAG = "taskladder.writer"  # <host>:<pid> of the process writing a run
# The MLflow UI opens an experiment of this kind in its "Model training" view (else GenAI traces).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"

T = TypeVar("T")


def resolve_uri(uri: str | None = None, default: str = DEFAULT_URI) -> str:
    """The explicit URI, else $TASKLADDER_TRACKING_URI, $MLFLOW_TRACKING_URI, else `default`.

    A relative SQLite path is made absolute so that child processes and `mlflow server` agree.
    """
    chosen = uri or next((os.environ[v] for v in URI_ENV_VARS if os.environ.get(v)), default)
    path = sqlite_path(chosen)
    return f"sqlite:///{path}" if path is not None else chosen


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (absolute), None for other stores."""
    if not uri.startswith("sqlite:"):
        return None
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        raise InputError(f"tracking URI {uri!r}: only file databases sqlite:///<path> "
                         "are supported")
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]).resolve()


def is_conflict(exc: BaseException) -> bool:
    """Did two writers insert the same key at once (the database's unique constraint)?"""
    text = str(exc).lower()
    return any(m in text for m in _CONFLICT_MARKERS)


def _is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(m in text for m in _LOCKED_MARKERS)


def retrying(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call `fn`, retrying with jittered exponential backoff while the database is locked."""
    deadline = time.monotonic() + _RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_locked_error(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


def _check_sqlite_file(path: Path) -> bool:
    """A corrupted or foreign file is reported in one line before MLflow touches it; True when
    the file already holds MLflow's schema. A refused file is left as it was found: the -wal
    and -shm files SQLite made while looking are removed."""
    side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
    found = {p for p in side if p.exists()}
    try:
        return _sqlite_schema(path)
    except InputError:
        for p in side:
            if p not in found:
                with contextlib.suppress(OSError):  # a read-only folder: nothing was made
                    p.unlink(missing_ok=True)
        raise


def _sqlite_schema(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh:
        if fh.read(16) != _SQLITE_MAGIC:
            raise InputError(f"tracking store {path}: not an SQLite database (corrupted store?)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            query = "SELECT name FROM sqlite_master WHERE type='table'"
            tables = {r[0] for r in con.execute(query)}
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc) or not os.access(path.parent, os.W_OK):
            raise InputError(f"tracking store {path}: read-only (SQLite needs to write the file "
                             "and its folder, even to read a WAL store)") from None
        raise InputError(f"tracking store {path}: unreadable SQLite database ({exc})") from None
    if ok != "ok":
        raise InputError(f"tracking store {path}: integrity check failed ({ok})")
    if tables and not {"alembic_version", "experiments", "runs"} <= tables:
        raise InputError(f"tracking store {path}: SQLite database without MLflow's tables")
    return bool(tables)


@dataclass
class Store:
    """An MLflow client on one tracking URI, with the locking that its writers need."""

    uri: str
    client: object  # mlflow.MlflowClient; typed loosely so that importing this stays cheap
    _held: int = field(default=0, repr=False)  # re-entrant depth of `exclusive`
    _claims: dict[str, str] = field(default_factory=dict, repr=False)  # settled, immutable
    _swept: set[str] = field(default_factory=set, repr=False)  # experiments swept this session

    @property
    def db_path(self) -> Path | None:
        return sqlite_path(self.uri)

    def call(self, method: str, *args, **kwargs):
        """`client.<method>(...)`, retried while the database is locked."""
        return retrying(getattr(self.client, method), *args, **kwargs)

    def upsert(self, method: str, *args, **kwargs):
        """A write that several writers may race on (`set_model_version_tag`,
        `set_registered_model_alias`, the params of a shared run).

        MLflow writes these as read-then-insert: two writers setting the same key at once both
        insert, and the later one fails on the unique key (SQLite and PostgreSQL alike; the
        window widens when the machine is loaded; on PostgreSQL the conflict surfaces at
        commit, past MLflow's own handling). Once the row exists the write is an update (or,
        for a param, a check that the value is the same), so the loser writes again. (Run tags
        go through `log_batch`, whose tag path MLflow already retries.)
        """
        for attempt in range(3):
            try:
                return self.call(method, *args, **kwargs)
            except Exception as exc:
                if not is_conflict(exc) or attempt == 2:
                    raise

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Serialise find-or-create sections between processes sharing an SQLite file."""
        path = self.db_path
        outer = self._held == 0 and path is not None
        with _folder_lock(path.parent) if outer else nullcontext():
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1

    def canonical(self, key: str, candidate: str) -> str:
        """The record id that `key` is bound to, binding it to `candidate` if still free.

        On SQLite the caller's `exclusive` section already makes the candidate the only one.
        Elsewhere the binding is a claim experiment named after the key, created with the id as
        a tag in one transaction and then soft-deleted so that it stays out of the UI's lists.
        MLflow has no compare-and-set or named lock in its public API; a unique name is the one
        atomic primitive it offers.
        """
        if self.db_path is not None:
            return candidate
        if key not in self._claims:
            from mlflow.exceptions import MlflowException

            name = CLAIM_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:40]
            try:
                eid = self.call("create_experiment", name,
                                tags={"taskladder.claim": key, "record": candidate})
                self.call("delete_experiment", eid)
                self._claims[key] = candidate
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                self._claims[key] = self.call("get_experiment_by_name", name).tags["record"]
        return self._claims[key]

    def create_run(self, eid: str, run_name: str, tags: dict[str, str]):
        """A new run tagged with its writer (so a run its killed writer left is recognised)."""
        self.sweep(eid)
        self.check_artifacts(eid)
        return self.call("create_run", eid, run_name=run_name,
                         tags={**tags, WRITER_TAG: _writer()})

    def check_artifacts(self, eid: str | None = None) -> None:
        """A local artifact folder (experiment `eid`'s, else the store's) must be writable
        before anything is registered in it."""
        if eid is not None:
            location = self.call("get_experiment", eid).artifact_location
        elif self.db_path is not None:
            location = (self.db_path.parent / "mlartifacts").as_uri()
        else:
            return
        if not location.startswith("file:"):
            return
        from mlflow.utils.file_utils import local_file_uri_to_path

        path = Path(local_file_uri_to_path(location))
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"artifact folder {existing}: not writable (the registry keeps "
                             "its runs' files there)")

    @contextmanager
    def writing(self, run_id: str, *, resumable: bool = False) -> Iterator[None]:
        """Write run `run_id` all-or-nothing: on any error or interrupt it is marked FAILED and,
        unless `resumable` (a ladder run that a rerun completes), deleted."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self.call("set_terminated", run_id, "FAILED")
                if not resumable:
                    self.call("delete_run", run_id)
            raise

    def sweep(self, eid: str, *, resumable: bool = False) -> None:
        """Remove the runs that a failed or killed registration left in experiment `eid`
        (once per experiment and session): FAILED ones, and RUNNING ones whose writer is a
        process of this host that no longer exists. Resumable runs are only marked FAILED."""
        if eid in self._swept:
            return
        self._swept.add(eid)
        for status in ("RUNNING",) if resumable else ("FAILED", "RUNNING"):
            for run in self.call("search_runs", [eid], max_results=1000,
                                 filter_string=f"attributes.status = '{status}'"):
                if status == "RUNNING" and not _dead(run.data.tags.get(WRITER_TAG)):
                    continue
                self.call("set_terminated", run.info.run_id, "FAILED")
                if not resumable:
                    self.call("delete_run", run.info.run_id)

    def experiment_id(self, name: str, tags: dict[str, str] | None = None) -> str:
        """Id of the experiment `name`, created (with artifacts beside the database) if absent."""
        from mlflow.exceptions import MlflowException

        exp = self.call("get_experiment_by_name", name)
        if exp is not None:
            if exp.tags.get(KIND_TAG) != KIND:  # made before the UI's kinds: set it once
                self.call("set_experiment_tag", exp.experiment_id, KIND_TAG, KIND)
            return exp.experiment_id
        with self.exclusive():
            exp = self.call("get_experiment_by_name", name)
            if exp is not None:
                return exp.experiment_id
            location = None
            if self.db_path is not None:
                location = (self.db_path.parent / "mlartifacts" / name).as_uri()
            tags = {**(tags or {}), KIND_TAG: KIND}
            try:
                return self.call("create_experiment", name, artifact_location=location, tags=tags)
            except MlflowException as exc:  # another writer of a shared server was first
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            return self.call("get_experiment_by_name", name).experiment_id


def _writer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead(writer: str | None) -> bool:
    """Is `writer` (<host>:<pid>) a process of this host that no longer runs?"""
    host, _, pid = (writer or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def _folder_lock(folder: Path, shared: bool = False) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def open_store(uri: str | None = None, *, create: bool = True) -> Store:
    """A validated client on the tracking store; `create=False` refuses to make a new SQLite file.

    Readers (the gate, check-target) pass create=False so that a mistyped path is an error
    rather than a fresh empty store.
    """
    uri = resolve_uri(uri)
    path = sqlite_path(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep CLI output clean
    if path is None:
        check_remote(uri)
        return Store(uri=uri, client=_client(uri))
    if not path.parent.is_dir():
        raise InputError(f"tracking store {path}: folder {path.parent} does not exist")
    if not create and not path.exists():
        raise InputError(f"tracking store {path} does not exist (set --tracking-uri)")
    # Look at the file under a shared lock (so never while another process creates the schema);
    # create the schema under the exclusive lock, re-checking after the upgrade.
    with _folder_lock(path.parent, shared=True):
        ready = _check_sqlite_file(path)
        client = _client(uri) if ready else None
    if client is None:
        with _folder_lock(path.parent):
            ready = _check_sqlite_file(path)
            client = _client(uri)
            if not ready:
                _enable_wal(path)
    if _misplaced(path):
        with _folder_lock(path.parent):
            _relocate(path)
    return Store(uri=uri, client=client)


def _artifact_rows(con: sqlite3.Connection) -> list[tuple[int, str, str]]:
    return con.execute("SELECT experiment_id, artifact_location, lifecycle_stage "
                       "FROM experiments").fetchall()


def _misplaced(path: Path) -> bool:
    """Does the store keep artifacts outside its folder (it was copied or moved), or show
    MLflow's Default experiment (artifacts in whatever folder first opened it, never used)?"""
    home = path.parent.as_uri() + ARTIFACTS
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = retrying(_artifact_rows, con)
    finally:
        con.close()
    return any((eid == 0 and stage == "active") or
               (ARTIFACTS in loc and not loc.startswith(home)) for eid, loc, stage in rows)


def _relocate(path: Path) -> None:
    """Point every artifact location at this folder's `mlartifacts`, so that a copied or moved
    output folder keeps its artifacts and a copy writes into itself; hide the unused Default
    experiment. The locations are absolute URIs in MLflow's tables: rewritten in place."""
    home = path.parent.as_uri()
    con = sqlite3.connect(path, timeout=30)
    try:
        olds = {loc[:loc.rindex(ARTIFACTS)] for _, loc, _ in retrying(_artifact_rows, con)
                if loc.startswith("file:") and ARTIFACTS in loc} - {home}
        with con:
            for old in olds:
                prefix = old + ARTIFACTS
                for table, column in _LOCATIONS:
                    retrying(con.execute, f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                             f"WHERE substr({column}, 1, ?) = ?",
                             (home, len(old) + 1, len(prefix), prefix))
            retrying(con.execute, "UPDATE experiments SET artifact_location = ?, "
                     "lifecycle_stage = 'deleted' WHERE experiment_id = 0 AND NOT EXISTS "
                     "(SELECT 1 FROM runs WHERE experiment_id = 0)",
                     (home + ARTIFACTS + "Default",))
    finally:
        con.close()


def check_uri(uri: str | None, field: str = "--tracking-uri") -> None:
    """What `open_store` would refuse, found without creating anything (a run's preflight and
    its dry run): an SQLite file we can write (or create) and read, or a reachable server."""
    from taskladder.common.io import check_writable

    uri = resolve_uri(uri)
    path = sqlite_path(uri)
    if path is None:
        check_remote(uri)
        return
    check_writable(path, field)
    if path.is_file():
        with _folder_lock(path.parent, shared=True):
            _check_sqlite_file(path)


# MLflow's stores by URI scheme (before any `+driver`), and the ports a server listens on.
_SCHEMES = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433,
            "file": None, "databricks": None}
_DATABASES = ("postgresql", "mysql", "mssql")
CONNECT_SECONDS = 5.0


def check_remote(uri: str) -> None:
    """A URI other than SQLite, checked before MLflow retries for minutes: a known scheme, its
    database driver installed (the `server` extra), its host answering within seconds."""
    from urllib.parse import urlsplit

    shown = mask(uri)
    if "://" not in uri:
        raise InputError(f"tracking URI {shown!r}: expected sqlite:///PATH, http(s)://HOST:PORT "
                         "or postgresql+psycopg2://USER@HOST/DB")
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _SCHEMES:
        raise InputError(f"tracking URI {shown!r}: unknown scheme {parts.scheme!r} (use "
                         "sqlite:///PATH, http(s)://HOST:PORT or postgresql+psycopg2://...)")
    if scheme in _DATABASES:
        _check_driver(uri, shown)
    if _SCHEMES[scheme] is None:
        return
    try:
        host, port = parts.hostname, parts.port or _SCHEMES[scheme]
    except ValueError:
        raise InputError(f"tracking URI {shown!r}: bad port") from None
    if not host:
        raise InputError(f"tracking URI {shown!r}: no host")
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise InputError(f"tracking store {shown}: cannot reach {host}:{port} ({why} within "
                         f"{CONNECT_SECONDS:g} s)") from None


def _check_driver(uri: str, shown: str) -> None:
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
        dialect.import_dbapi()
    except (ArgumentError, NoSuchModuleError) as exc:
        raise InputError(f"tracking URI {shown!r}: {exc}") from None
    except ImportError as exc:
        hint = " and write postgresql+psycopg2://..." if uri.startswith("postgresql:") else ""
        raise InputError(f"tracking URI {shown!r} needs the database driver "
                         f"{exc.name or dialect.driver!r} (not installed): pip install "
                         f"'taskladder[server]'{hint}") from None


def _client(uri: str):
    import mlflow  # heavy: imported only when a store is opened

    try:
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        # One cheap read of each store opens both now (so a bad URI fails here, in one line).
        retrying(client.search_experiments, max_results=1)
        retrying(client.search_registered_models, max_results=1)
    except mlflow.exceptions.MlflowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"tracking store {mask(uri)}: cannot be opened ({first})") from None
    return client


def _enable_wal(path: Path) -> None:
    """WAL lets the UI server and the gate read while ladder runs write (persistent per file)."""
    con = sqlite3.connect(path, timeout=30)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            retrying(con.execute, "PRAGMA journal_mode=WAL")
    finally:
        con.close()
