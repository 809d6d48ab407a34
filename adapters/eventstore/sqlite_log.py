"""The event log in one SQLite file, with the read model kept in the same transactions.

`<root>/events.db`, WAL. Appends take their turn in the writers' queue (writers.py), then
the write lock (BEGIN IMMEDIATE), check each stream's expected version, chain the hashes,
fold the events into the read-model rows with core.model.evolve, and commit all of it or
none; they return once the commit is on the disk. What needs no lock (the events' JSON,
the fsync, the WAL's checkpoints) is done outside it: at 100 concurrent API clients the
lock's hold time is the log's throughput. Plain sqlite3 on this path: it is the one every
command pays for.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from adapters.eventstore.schema import SCHEMA_VERSION, migrate
from adapters.eventstore.writers import QueueError, QueueTimeout, queue_path, turn
from core.errors import ConcurrencyError, StoreError
from core.model import (
    KINDS,
    Container,
    ContainerBrief,
    Image,
    ImageBrief,
    Layer,
    Network,
    Volume,
    brief_doc,
    brief_from_doc,
    brief_of,
    container_brief_of,
    evolve,
    from_doc,
    settled,
    to_doc,
)
from events.codec import Decode, bulk_decoder, bulk_ready, decode, typed_decoder
from events.envelope import Recorded
from events.hashchain import GENESIS, canonical, row_hash

if TYPE_CHECKING:
    from events.types import Event

DB_NAME = "events.db"
EVENT_COLUMNS = "seq, stream, version, type, schema, data, meta, at, prev_hash, hash"


def utcnow() -> str:
    """UTC with microseconds, the `at` of every event."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def busy_timeout() -> float:
    return float(os.environ.get("LAMINA_BUSY_TIMEOUT", "10"))


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    """synchronous=NORMAL: a commit doesn't fsync the WAL (it would, under the write lock,
    with FULL); append() does after the lock is released. wal_autocheckpoint=0: SQLite's
    automatic checkpoint runs inside the COMMIT that crosses its threshold, so within the
    writer's turn; write_transaction() runs one after the turn instead."""
    try:
        con = sqlite3.connect(path, isolation_level=None, timeout=timeout,
                              check_same_thread=False)
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
        return con
    except sqlite3.Error as err:
        raise _explain(path, err) from None


def _explain(path: str, err: sqlite3.Error) -> StoreError:
    text = str(err)
    if "locked" in text or "busy" in text:
        return StoreError(f"{path} is locked by another process (gave up after "
                          f"{busy_timeout():g}s): {text}")
    if "not a database" in text or "malformed" in text:
        return StoreError(f"{path} is not a lamina event log or is corrupted: {text}")
    if "readonly" in text or "unable to open" in text:
        return StoreError(f"{path} is not writable: {text}")
    return StoreError(f"{path}: {text}")


# A passive checkpoint of the WAL into the database after every this many turns of the
# log's writers (~1,000 WAL pages, SQLite's own default threshold, at ~8 pages an append).
CHECKPOINT_EVERY = 128


@contextmanager
def write_transaction(con: sqlite3.Connection, path: str,
                      sync: bool = True) -> Iterator[None]:
    """A turn in the writers' queue of the log at `path`, and in it BEGIN IMMEDIATE ...
    COMMIT, rolled back on any error; sqlite errors become StoreError. After the turn,
    every CHECKPOINT_EVERY turns, a passive checkpoint (it waits for no one, and no writer
    waits for it), then the WAL's fsync (`sync`: the commit is on the disk when this
    returns; SqliteEventLog.append syncs itself, so that sync_deferred can defer it)."""
    try:
        with turn(path, busy_timeout()) as number, _transaction(con, path):
            yield
    except QueueTimeout:
        raise StoreError(f"{path} is locked by another process (no writer had a turn for "
                         f"{busy_timeout():g}s)") from None
    except QueueError as err:
        raise StoreError(f"{path} is not writable: {err}") from None
    if number % CHECKPOINT_EVERY == 0:
        with suppress(sqlite3.OperationalError):
            con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    if sync:
        sync_wal(path)


def sync_wal(path: str) -> None:
    """fdatasync the log's WAL: what its commits (synchronous=NORMAL, _connect) leave to
    their writer, outside its turn. A WAL gone (its last connection checkpointed it into
    the database, synced, and removed it) or restarted (only after a checkpoint of all of
    it) holds nothing that the database file doesn't have on the disk already."""
    try:
        fd = os.open(path + "-wal", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


@contextmanager
def _transaction(con: sqlite3.Connection, path: str) -> Iterator[None]:
    try:
        con.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as err:
        raise _explain(path, err) from None
    try:
        yield
        con.execute("COMMIT")
    except sqlite3.IntegrityError as err:
        con.execute("ROLLBACK")
        raise ConcurrencyError(f"another command changed the same object first: {err}") \
            from None
    except sqlite3.Error as err:
        con.execute("ROLLBACK")
        raise _explain(path, err) from None
    except BaseException:
        con.execute("ROLLBACK")
        raise


class ReadModel:
    """The read model's accessors of the EventLog port, written once for both stores over
    the queries each writes in its own SQL: `_by` (one aggregate by id or name), `_tagged`
    (the image with a tag), `_all` (a kind's aggregates, or those in some states, in the
    order they were made), `_some` (those of some ids, in that order) and `_ids` (ids from
    a prefix)."""

    def _by(self, kind: str, column: str, value: str) -> Any:
        raise NotImplementedError

    def _tagged(self, tag: str) -> Any:
        raise NotImplementedError

    def _all(self, kind: str, states: Sequence[str] | None = None) -> list[Any]:
        raise NotImplementedError

    def _ids(self, kind: str, prefix: str, limit: int) -> list[str]:
        raise NotImplementedError

    def _some(self, kind: str, ids: Collection[str]) -> list[Any]:
        raise NotImplementedError

    def container(self, cid: str) -> Container | None:
        return self._by("container", "id", cid)

    def containers(self, states: Sequence[str] | None = None) -> list[Container]:
        return self._all("container", states)

    def container_briefs(self, states: Sequence[str] | None = None
                         ) -> Sequence[Container | ContainerBrief]:
        """Briefs of the containers decoded whole: a store with a faster way overrides it."""
        return [container_brief_of(c) for c in self.containers(states)]

    def container_named(self, name: str) -> Container | None:
        return self._by("container", "name", name)

    def container_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return self._ids("container", prefix, limit)

    def image(self, iid: str) -> Image | None:
        return self._by("image", "id", iid)

    def images(self, ids: Collection[str] | None = None) -> list[Image]:
        return self._all("image") if ids is None else self._some("image", ids)

    def image_briefs(self, ids: Collection[str]) -> list[ImageBrief]:
        """Briefs of the images decoded whole: a store with a faster way overrides it."""
        return [brief_of(i) for i in self.images(ids)]

    def image_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return self._ids("image", prefix, limit)

    def image_tagged(self, tag: str) -> Image | None:
        return self._tagged(tag)

    def layer(self, lid: str) -> Layer | None:
        return self._by("layer", "id", lid)

    def layers(self) -> list[Layer]:
        return self._all("layer")

    def volume(self, name: str) -> Volume | None:
        return self._by("volume", "id", name)

    def volumes(self) -> list[Volume]:
        return self._all("volume")

    def network(self, nid: str) -> Network | None:
        return self._by("network", "id", nid)

    def network_named(self, name: str) -> Network | None:
        return self._by("network", "name", name)

    def networks(self) -> list[Network]:
        return self._all("network")


class SqliteEventLog(ReadModel):
    """The EventLog port on SQLite. One instance per process is enough."""

    def __init__(self, root: str, *, create: bool = True) -> None:
        self.root = root
        self.path = os.path.join(root, DB_NAME)
        if create:
            ensure_root(root)
        elif not os.path.exists(self.path):
            raise FileNotFoundError(self.path)
        keep_private(root, self.path)
        self.timeout = busy_timeout()
        self._con: sqlite3.Connection | None = _connect(self.path, self.timeout)
        self._file = _identity(self.path)
        self._deferring = False  # in sync_deferred(): commits don't wait for the disk
        self._unsynced = False  # a commit made so is not on the disk yet (flush() puts it)
        self._listed: tuple[Any, list[Container]] | None = None  # containers(): the last
        try:
            self._check_schema(create)
        except sqlite3.Error as err:
            self.suspend()
            raise _explain(self.path, err) from None
        except BaseException:
            self.suspend()
            raise

    def _check_schema(self, create: bool) -> None:
        version = self.con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer lamina (schema {version}; "
                             f"this lamina reads up to {SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            if not create:
                raise StoreError(f"{self.path} needs migrating: run a lamina command that "
                                 "changes state")
            self.con.execute("PRAGMA journal_mode=WAL")
            with write_transaction(self.con, self.path):
                if self.con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    migrate(self.con)

    @property
    def con(self) -> sqlite3.Connection:
        """The connection, reopened if `suspend()` closed it."""
        if self._con is None:
            self._con = _connect(self.path, self.timeout)
        return self._con

    def containers(self, states: Sequence[str] | None = None) -> list[Container]:
        """As ReadModel's, but the last listing is kept while the file is as it was then:
        the fork server's spare lists the live containers ahead (bootstrap.prepare), and
        its command then lists them again, in recover and in `ps` (784 of them: ~7 ms of
        decoding each time). Unchanged means: no commit by another connection (SQLite's
        data_version, read before the query) and none by this one (total_changes)."""
        key = self._listing_key(states)
        if self._listed is None or self._listed[0] != key:
            self._listed = (key, super().containers(states))
        return list(self._listed[1])

    def container_briefs(self, states: Sequence[str] | None = None
                         ) -> Sequence[Container | ContainerBrief]:
        """The kept listing when there is one (a served `ps` after its spare's), else the
        containers' briefs (container_briefs, written beside their documents: schema.py
        v6), decoded straight into ContainerBrief."""
        if self._listed is not None and self._listed[0] == self._listing_key(states):
            return list(self._listed[1])
        decode_one = _container_brief()
        rows = self._in_states("SELECT brief FROM container_briefs", "made", states)
        with no_collections():
            return [decode_one(doc) for (doc,) in rows]

    def _listing_key(self, states: Sequence[str] | None) -> tuple[Any, ...]:
        return (tuple(states) if states is not None else None,
                self.con.execute("PRAGMA data_version").fetchone()[0], self.con.total_changes)

    def still_current(self) -> bool:
        """Whether a log opened a while ago (the fork server's spare opens one ahead of its
        command) still writes the root's log file under the settings a command would open
        it with now: a root deleted and made again has a new file, and the old connection
        would write into the deleted one."""
        return self.timeout == busy_timeout() and _identity(self.path) == self._file

    def suspend(self) -> None:
        """Close the connection before fork(): SQLite's state must not cross into a child
        (its locks and WAL bookkeeping would then be shared). The next use reopens it."""
        if self._con is not None:
            self._con.close()
            self._con = None
        self._listed = None  # a new connection counts its own data_version

    close = suspend

    # --- append -------------------------------------------------------------------------

    def append(self, events: Sequence[Event], *, expected: Mapping[str, int],
               meta: Mapping[str, Any]) -> list[Recorded]:
        """Append all of `events` or none; see the EventLog port. Returns once the commit is
        on the disk (but in sync_deferred()): the WAL is fsynced after the writer's turn,
        so the next writer doesn't wait for this one's disk. Meanwhile other commands may
        read the commit: a power cut in that millisecond loses it with whatever they
        appended after it (the WAL is synced as a whole, so the log stays a prefix)."""
        encoded = [(event, data, canonical(data)) for event in events
                   for data in (event.data(),)]
        meta_text = canonical(dict(meta))
        with write_transaction(self.con, self.path, sync=False):  # flush() syncs, or a
            out = self._append_locked(encoded, expected, meta, meta_text)  # later append
        self._unsynced = True
        if not self._deferring:
            self.flush()
        return out

    @contextmanager
    def sync_deferred(self) -> Iterator[None]:
        """Appends in this block return without waiting for the disk, for a caller whose
        next append does wait (or who calls flush()): that one fsync of the WAL makes them
        all durable, in order, since the WAL is synced as a whole. Each is still atomic and
        seen by every reader at once; a crash of the process loses none of them (they are
        in the kernel's cache); only a power cut before that fsync does, and then the
        later append with them (the WAL is a prefix). So `run --rm` records the exit and
        the removal with one fsync, before its client has the answer (SQLite still syncs
        around checkpoints)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def flush(self) -> None:
        """Put on the disk what was committed without waiting for it, if nothing did since."""
        if self._unsynced:
            sync_wal(self.path)
            self._unsynced = False

    def _version(self, stream: str) -> int:
        row = self.con.execute("SELECT max(version) FROM events WHERE stream = ?",
                               (stream,)).fetchone()
        return row[0] or 0

    def _append_locked(self, encoded: Sequence[tuple[Event, dict[str, Any], str]],
                       expected: Mapping[str, int], meta: Mapping[str, Any],
                       meta_text: str) -> list[Recorded]:
        """The part of an append that needs the write lock: the versions, the chain, the
        rows and the read model (the JSON texts were made before it)."""
        con = self.con
        versions: dict[str, int] = {}
        for stream, want in expected.items():
            have = versions[stream] = self._version(stream)
            if have != want:
                raise ConcurrencyError(f"{stream} changed while this command ran (at version "
                                       f"{have}, expected {want}): try again")
        last = con.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = last if last else (0, GENESIS)
        out: list[Recorded] = []
        rows = []
        for event, data, data_text in encoded:
            stream = event.stream()
            if stream not in versions:
                versions[stream] = self._version(stream)
            versions[stream] += 1
            seq += 1
            at, type_ = utcnow(), event.type_name()
            h = row_hash(prev, seq, stream, versions[stream], type_, event.SCHEMA, data_text,
                         meta_text, at)
            rows.append((seq, stream, versions[stream], type_, event.SCHEMA, data_text,
                         meta_text, at, prev, h))
            out.append(Recorded(seq, stream, versions[stream], type_, event.SCHEMA, data,
                                dict(meta), at, prev, h))
            prev = h
        con.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        rows)
        self._project(out)
        return out

    def _project(self, recs: Sequence[Recorded]) -> None:
        """Fold the new events into the read-model rows, inside the append's transaction."""
        touched: dict[tuple[str, str], Any] = {}
        for rec in recs:
            kind = rec.kind
            if kind not in KINDS:
                continue
            key = (kind, rec.target)
            agg = touched[key] if key in touched else self._load(kind, rec.target)
            touched[key] = evolve(agg, rec)
        for (kind, ident), agg in touched.items():
            if agg is None:
                if kind == "network":
                    check_unleased(self.con, ident)
                self.con.execute(f"DELETE FROM {kind}s WHERE id = ?", (ident,))
                if kind == "container":
                    drop_leases(self.con, ident)
            else:
                write_row(self.con, kind, agg)

    def _load(self, kind: str, ident: str) -> Any:
        row = self.con.execute(f"SELECT doc FROM {kind}s WHERE id = ?", (ident,)).fetchone()
        return from_doc(kind, json.loads(row[0])) if row else None

    # --- read ---------------------------------------------------------------------------

    def read(self, *, after: int = 0, stream: str | None = None) -> Iterator[Recorded]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?"
        args: list[Any] = [after]
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        for row in self.con.execute(sql + " ORDER BY seq", args):
            yield recorded(row)

    def last_seq(self) -> int:
        return self.con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]

    # --- read model: the accessors are ReadModel's, over these queries -------------------

    def _by(self, kind: str, column: str, value: str) -> Any:
        row = self.con.execute(f"SELECT doc FROM {kind}s WHERE {column} = ?",
                               (value,)).fetchone()
        return from_doc(kind, json.loads(row[0])) if row else None

    def _tagged(self, tag: str) -> Any:
        row = self.con.execute("SELECT doc FROM images WHERE EXISTS (SELECT 1 FROM "
                               "json_each(images.tags) WHERE value = ?)", (tag,)).fetchone()
        return from_doc("image", json.loads(row[0])) if row else None

    def _all(self, kind: str, states: Sequence[str] | None = None) -> list[Any]:
        """Every aggregate of a kind, or those in `states` (filtered in SQL: ps lists only
        live ones), in the order they were made."""
        return aggregates(kind, self._docs_in(kind, states))

    def _docs_in(self, kind: str, states: Sequence[str] | None) -> sqlite3.Cursor:
        return self._in_states(f"SELECT doc FROM {kind}s", "rowid", states)

    def _in_states(self, select: str, order: str, states: Sequence[str] | None
                   ) -> sqlite3.Cursor:
        """`select`'s rows, or those in `states` (filtered in SQL), ordered by `order`."""
        if states is None:
            return self.con.execute(f"{select} ORDER BY {order}")
        marks = ",".join("?" * len(states))
        return self.con.execute(f"{select} WHERE state IN ({marks}) ORDER BY {order}",
                                tuple(states))

    def image_briefs(self, ids: Collection[str]) -> list[ImageBrief]:
        """Each image's document decoded straight into its brief (events/codec.py
        typed_decoder): the fields no row shows are skipped, not built (~2 us an image,
        against ~8 us whole)."""
        decode_one = _brief()
        return [decode_one(doc) for (doc,) in self._docs("image", ids)]

    def _ids(self, kind: str, prefix: str, limit: int) -> list[str]:
        rows = self.con.execute(f"SELECT id FROM {kind}s WHERE id >= ? AND id < ? LIMIT ?",
                                (prefix, prefix + "\U0010ffff", limit))
        return [r[0] for r in rows]

    def _some(self, kind: str, ids: Collection[str]) -> list[Any]:
        """The aggregates of these ids, in one query whatever their number (one JSON
        array, not a parameter each: SQLite caps those)."""
        return aggregates(kind, self._docs(kind, ids))

    def _docs(self, kind: str, ids: Collection[str]) -> sqlite3.Cursor:
        return self.con.execute(f"SELECT doc FROM {kind}s WHERE id IN (SELECT value FROM "
                                "json_each(?)) ORDER BY rowid", (json.dumps(list(ids)),))


# From this many rows on, a listing decodes them with codec.typed_decoder: its import
# (~10 ms, once) is then paid back (~15 µs a container row by from_doc, ~5 µs typed).
MANY_ROWS = 500


def aggregates(kind: str, rows: Iterable[Sequence[str]]) -> list[Any]:
    """The aggregates of read-model `doc` rows, in order: `ps` of 1,000 containers is
    mostly this, so a long list (or one in a process that has the fast decoders already,
    such as the server) is decoded straight into the dataclasses."""
    docs = [doc for (doc,) in rows]
    if len(docs) < MANY_ROWS and not bulk_ready():
        return [from_doc(kind, json.loads(doc)) for doc in docs]
    decode_one = _typed(kind)
    with no_collections():
        return [decode_one(doc) for doc in docs]


@contextmanager
def no_collections() -> Iterator[None]:
    """The garbage collector off while a listing decodes: a thousand containers are some
    ten thousand new objects, none in a cycle, and the collector would pass over them
    (and every older object, at its third generation) a dozen times as they are made
    (~1.4 ms of a 9 ms `ps` of 784 containers: docs/benchmarks.md)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_TYPED: dict[str, Callable[[str | bytes], Any]] = {}


def warm_decoders() -> None:
    """Make the fast decoders ahead (the fork server, before its first client): a served
    `ps` of a thousand containers then pays neither msgspec's import nor their making."""
    bulk_decoder()
    for kind in KINDS:
        _typed(kind)
    _brief()
    _container_brief()


def _typed(kind: str) -> Callable[[str | bytes], Any]:
    if kind not in _TYPED:
        typed: Callable[[str | bytes], Any] = typed_decoder(
            KINDS[kind], lambda doc: from_doc(kind, json.loads(doc)))
        _TYPED[kind] = (lambda doc: settled(typed(doc))) if kind == "container" else typed
    return _TYPED[kind]


def _brief() -> Callable[[str | bytes], Any]:
    """An image's document straight into its ImageBrief (SqliteEventLog.image_briefs)."""
    if "brief" not in _TYPED:
        _TYPED["brief"] = typed_decoder(
            ImageBrief, lambda doc: brief_of(cast(Image, from_doc("image", json.loads(doc)))))
    return _TYPED["brief"]


def _container_brief() -> Callable[[str | bytes], Any]:
    """A container's document straight into its ContainerBrief (container_briefs)."""
    if "container brief" not in _TYPED:
        _TYPED["container brief"] = typed_decoder(
            ContainerBrief, lambda doc: brief_from_doc(json.loads(doc)))
    return _TYPED["container brief"]


def write_row(con: sqlite3.Connection, kind: str, agg: Any) -> None:
    """Upsert one aggregate's read-model row (the same form for appends and rebuilds)."""
    fields = to_doc(agg)
    doc = canonical(fields)
    if kind == "container":
        # an upsert on the id alone: OR REPLACE would also delete another container that
        # holds the same name (two racing creates), where the UNIQUE name must refuse this one
        con.execute("INSERT INTO containers (id, version, name, image, state, doc) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "version = excluded.version, name = excluded.name, "
                    "image = excluded.image, state = excluded.state, doc = excluded.doc",
                    (agg.id, agg.version, agg.name, agg.image, agg.state, doc))
        con.execute("INSERT OR REPLACE INTO container_briefs (made, state, brief) VALUES "
                    "((SELECT rowid FROM containers WHERE id = ?), ?, ?)",
                    (agg.id, agg.state, canonical(brief_doc(fields))))
        write_leases(con, agg)
    elif kind == "image":
        con.execute("INSERT OR REPLACE INTO images (id, version, tags, doc) VALUES (?,?,?,?)",
                    (agg.id, agg.version, canonical(list(agg.tags)), doc))
    elif kind == "network":
        con.execute("INSERT INTO networks (id, version, name, subnet, doc) "
                    "VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "version = excluded.version, name = excluded.name, "
                    "subnet = excluded.subnet, doc = excluded.doc",
                    (agg.id, agg.version, agg.name, agg.subnet, doc))
    else:  # layers, volumes
        con.execute(f"INSERT OR REPLACE INTO {kind}s (id, version, doc) VALUES (?,?,?)",
                    (agg.id, agg.version, doc))


def check_unleased(con: sqlite3.Connection, network_id: str) -> None:
    """A network is removed only while no container holds an address on it: `network rm`
    judged its members before a start or connect leased there (the removal then fails as
    a conflict, and is judged again)."""
    row = con.execute("SELECT container FROM leases WHERE network = ? LIMIT 1",
                      (network_id,)).fetchone()
    if row is not None:
        raise sqlite3.IntegrityError(f"container {row[0][:12]} holds an address on it")


def drop_leases(con: sqlite3.Connection, cid: str) -> None:
    con.execute("DELETE FROM leases WHERE container = ?", (cid,))
    con.execute("DELETE FROM bindings WHERE container = ?", (cid,))


def write_leases(con: sqlite3.Connection, c: Any) -> None:
    """A container's rows of `leases` and `bindings`: its current run's (none when it
    doesn't run). An address another container holds on the network fails the primary key,
    a port clashing with another's binding (same proto and port, same address or either
    ANY) is refused here: both as IntegrityError, which the append turns into a conflict
    (the start then chooses again, seeing the other's lease)."""
    drop_leases(con, c.id)
    if c.endpoints:
        from core.networks import DEFAULT_NETWORK_ID
    for ep in c.endpoints.values():
        if ep["id"] != DEFAULT_NETWORK_ID and con.execute(
                "SELECT 1 FROM networks WHERE id = ?", (ep["id"],)).fetchone() is None:
            raise sqlite3.IntegrityError(f"network {ep['id'][:12]} was removed meanwhile")
        for address in (ep["address"], ep.get("address6")):  # both of a dual-stack one
            if address:
                con.execute("INSERT INTO leases (container, network, address) VALUES (?,?,?)",
                            (c.id, ep["id"], address))
    for b in c.ports:
        clash = con.execute(
            "SELECT container FROM bindings WHERE proto = ? AND host_port = ? AND "
            "(host_ip = ? OR host_ip = '0.0.0.0' OR ? = '0.0.0.0') LIMIT 1",
            (b["proto"], b["host_port"], b["host_ip"], b["host_ip"])).fetchone()
        if clash is not None:
            raise sqlite3.IntegrityError(f"{b['host_ip']}:{b['host_port']}/{b['proto']} is "
                                         f"bound by {clash[0][:12]}")
        con.execute("INSERT INTO bindings (container, proto, host_ip, host_port) "
                    "VALUES (?,?,?,?)", (c.id, b["proto"], b["host_ip"], b["host_port"]))


def current_schema() -> dict[str, int]:
    """Each event type's current schema version (defining the types costs ~10 ms: only
    commands that read or write events pay it)."""
    from events.types import CURRENT_SCHEMA

    return CURRENT_SCHEMA


def recorded(row: Sequence[Any], loads: Decode = decode) -> Recorded:
    """A Recorded from a full events row, its data upcast to the current schema; `loads`
    is codec.bulk_decoder() where many rows are read."""
    seq, stream, version, type_, schema, data, meta, at, prev, h = row
    data = loads(data)
    if schema != current_schema().get(type_):
        from events.upcasting import upcast

        data = upcast(type_, schema, data)
    return Recorded(seq, stream, version, type_, schema, data, loads(meta), at, prev, h)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def keep_private(root: str, path: str) -> None:
    """The root 0700, the log and its WAL/SHM 0600: the log records every command's
    arguments and environment (the audit needs them, secrets included), so only root may
    read it. A new log file is made 0600 before SQLite opens it (SQLite gives its WAL and
    SHM the main file's mode); an existing root made before this rule is fixed on open.
    Costs a few stat calls; chmod only when something is off."""
    _restrict(root, PRIVATE_DIR)
    if not os.path.exists(path):
        with suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             PRIVATE_FILE))
    for name in (path, f"{path}-wal", f"{path}-shm", queue_path(path)):
        _restrict(name, PRIVATE_FILE)


def _restrict(path: str, mode: int) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_mode & 0o777 & ~mode:
        os.chmod(path, mode)


def ensure_root(root: str) -> None:
    """The root directory, made if missing and writable; a one-line error if not."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise StoreError(f"root {root} is not a directory")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot create root directory {root}: {err.strerror}") from None
    if not os.path.isdir(root):
        raise StoreError(f"root {root} is not a directory")
    if not os.access(root, os.W_OK):
        raise StoreError(f"root directory {root} is not writable")
