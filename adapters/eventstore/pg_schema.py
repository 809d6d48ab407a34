"""The PostgreSQL event store's shape: many hosts' logs in one database.

Each host's events keep their own seq and hash chain (PRIMARY KEY (host, seq)); `hosts`
holds each chain's head. The chain is checked by the database itself, in a trigger on every
insert: each seq must follow the one before (the head's, for a batch's first), prev_hash
must be that row's hash and the hash must be sha256(prev_hash + the canonical JSON of the
row) as events/hashchain.py computes it.
Whatever writes (an engine's append, a host's shipper, a hand-typed INSERT), a gap, a fork
or an edited event is refused with an error naming the host and the seq; UPDATE and DELETE
of events are refused outright. The read model (one `aggregates` table, by host) and the
snapshots are kept per host as SQLite's are for one.
"""

from __future__ import annotations

SCHEMA_VERSION = 2  # 2: the chain checked once per statement, set-based

# pg_advisory_xact_lock key: two processes creating the schema at once wait for each other
SCHEMA_LOCK = 0x6C616D696E61  # "lamina"

DDL = r"""
CREATE TABLE IF NOT EXISTS lamina_schema (version integer NOT NULL);

CREATE TABLE IF NOT EXISTS hosts (
    host text PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0,
    last_hash text NOT NULL DEFAULT repeat('0', 64),
    last_at text NOT NULL DEFAULT '',
    updated timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS events (
    host text NOT NULL REFERENCES hosts (host),
    seq bigint NOT NULL,
    stream text NOT NULL,
    version integer NOT NULL,
    type text NOT NULL,
    schema integer NOT NULL,
    data text NOT NULL,
    meta text NOT NULL,
    at text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (host, seq),
    UNIQUE (host, stream, version)
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE INDEX IF NOT EXISTS events_host_at ON events (host, at);

CREATE TABLE IF NOT EXISTS aggregates (
    host text NOT NULL,
    kind text NOT NULL,
    id text NOT NULL,
    ord bigserial,
    version integer NOT NULL,
    name text,
    state text,
    subnet text,
    tags text[] NOT NULL DEFAULT '{}',
    doc text NOT NULL,
    PRIMARY KEY (host, kind, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS aggregates_name ON aggregates (host, kind, name)
    WHERE name IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS aggregates_subnet ON aggregates (host, subnet)
    WHERE subnet IS NOT NULL;
CREATE INDEX IF NOT EXISTS aggregates_state ON aggregates (kind, state);

CREATE TABLE IF NOT EXISTS leases (
    host text NOT NULL, container text NOT NULL, network text NOT NULL, address text NOT NULL,
    PRIMARY KEY (host, network, address)
);
CREATE INDEX IF NOT EXISTS leases_container ON leases (host, container);
CREATE TABLE IF NOT EXISTS bindings (
    host text NOT NULL, container text NOT NULL, proto text NOT NULL, host_ip text NOT NULL,
    host_port integer NOT NULL,
    PRIMARY KEY (host, proto, host_port, host_ip)
);
CREATE INDEX IF NOT EXISTS bindings_container ON bindings (host, container);

CREATE TABLE IF NOT EXISTS snapshots (
    host text NOT NULL, seq bigint NOT NULL, at text NOT NULL, projection integer NOT NULL,
    world text NOT NULL,
    PRIMARY KEY (host, seq)
);

-- the hash of one row exactly as events/hashchain.py row_hash computes it: json.dumps with
-- sorted keys, no spaces, ensure_ascii=False (to_json escapes strings as Python does)
CREATE OR REPLACE FUNCTION lamina_row_hash(prev text, seq bigint, stream text, version integer,
        type text, schema integer, data text, meta text, at text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(sha256(convert_to(prev
    || '{"at":' || to_json(at)::text || ',"data":' || to_json(data)::text
    || ',"meta":' || to_json(meta)::text || ',"schema":' || schema::text
    || ',"seq":' || seq::text || ',"stream":' || to_json(stream)::text
    || ',"type":' || to_json(type)::text || ',"version":' || version::text || '}',
    'UTF8')), 'hex')
$$;

-- Checked once per statement (an INSERT or a COPY of a batch), set-based over the rows it
-- wrote: each host's head locked (one writer per chain at a time), then every new row must
-- follow the row before it in the batch, or the head for the first; the first that doesn't
-- is named. Row by row, a trigger's lookups are planned while the table is empty and
-- stay sequential scans: quadratic in a batch.
CREATE OR REPLACE FUNCTION lamina_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  PERFORM 1 FROM hosts WHERE host IN (SELECT DISTINCT host FROM fresh) ORDER BY host
    FOR UPDATE;
  SELECT f.* INTO bad FROM (
      SELECT n.host, n.seq, n.prev_hash, n.hash, h.last_seq AS head_seq,
             coalesce(lag(n.seq) OVER w, h.last_seq) AS before_seq,
             coalesce(lag(n.hash) OVER w, h.last_hash) AS before_hash,
             lamina_row_hash(n.prev_hash, n.seq, n.stream, n.version, n.type, n.schema,
                             n.data, n.meta, n.at) AS computed
        FROM fresh AS n JOIN hosts AS h ON h.host = n.host
        WINDOW w AS (PARTITION BY n.host ORDER BY n.seq)) AS f
    WHERE f.seq <> f.before_seq + 1 OR f.prev_hash <> f.before_hash OR f.computed <> f.hash
    ORDER BY f.host, f.seq LIMIT 1;
  IF FOUND THEN
    IF bad.seq <= bad.before_seq THEN
      RAISE EXCEPTION 'host %: seq % is already stored (the chain is at seq %)',
        bad.host, bad.seq, bad.head_seq USING ERRCODE = 'unique_violation';
    ELSIF bad.seq > bad.before_seq + 1 THEN
      RAISE EXCEPTION 'host %: gap: seq % arrived after seq %', bad.host, bad.seq,
        bad.before_seq USING ERRCODE = 'data_exception';
    ELSIF bad.prev_hash <> bad.before_hash THEN
      RAISE EXCEPTION 'host %: fork at seq %: its prev_hash is not the hash of seq %',
        bad.host, bad.seq, bad.before_seq USING ERRCODE = 'data_exception';
    ELSE
      RAISE EXCEPTION 'host %: seq % was edited: its hash does not match its contents',
        bad.host, bad.seq USING ERRCODE = 'data_exception';
    END IF;
  END IF;
  UPDATE hosts AS h SET last_seq = f.seq, last_hash = f.hash, last_at = f.at, updated = now()
    FROM (SELECT DISTINCT ON (host) host, seq, hash, at FROM fresh
          ORDER BY host, seq DESC) AS f
    WHERE h.host = f.host;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION lamina_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP;
END $$;

DROP TRIGGER IF EXISTS events_chain ON events;
DROP TRIGGER IF EXISTS events_heads ON events;
DROP FUNCTION IF EXISTS lamina_heads();
CREATE TRIGGER events_chain AFTER INSERT ON events REFERENCING NEW TABLE AS fresh
  FOR EACH STATEMENT EXECUTE FUNCTION lamina_chain();
DROP TRIGGER IF EXISTS events_append_only ON events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION lamina_append_only();
DROP TRIGGER IF EXISTS events_no_truncate ON events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION lamina_append_only();
"""
