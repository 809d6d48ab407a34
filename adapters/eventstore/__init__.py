"""The event log on SQLite: the EventLog port's adapter and what reads the file behind it.

events/ is the vocabulary (types, envelope, upcasting, the hash chain) and imports nothing of
lamina; everything that knows the log is a SQLite file lives here, behind core/ports.EventLog:

- sqlite_log.py: the EventLog (append with the hash chain, the read-model rows);
- schema.py: the database's shape, created and migrated through sqlite-utils;
- replay.py: rebuilds, snapshots and time travel over the file;
- query.py: `lamina events`' selection;
- audit.py: `lamina audit verify`, the hash chain walked row by row.
"""
