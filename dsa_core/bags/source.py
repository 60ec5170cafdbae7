"""A rosbag2 to read messages from, also when its storage file is damaged: read up to the damage and say what is lost.

Why: a recording cut short (full disk, power loss, a copy that stopped) is most of a drive; refusing it whole loses
everything that was readable. A healthy bag is read with rosbags' AnyReader (time order across split files). A bag
whose storage file is damaged is read in file order with the storage format's own tools:

* ``.mcap``: the ``mcap`` library's StreamReader, record by record, until the first record it cannot read (a chunk
  cut in the middle is lost whole);
* ``.db3``: sqlite3 row by row in insertion order until the first row sqlite cannot read (``writable_schema`` lets
  sqlite open a file shorter than its header says, as after a truncation).

``damage`` then lists, per storage file, why the reading stopped and how many messages per topic were read against
the counts in metadata.yaml. A directory without metadata.yaml (the recorder never closed the bag) is read the same
way, from the storage files it holds.
"""
from __future__ import annotations

import logging
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagOpenError(ValueError):
    """The path is not a rosbag2 this reader can use (user error: one line, no traceback)."""


@dataclass
class FileDamage:
    """Why the reading of one storage file stopped early, and what it read."""

    file: str
    reason: str
    read: dict[str, int] = field(default_factory=dict)  # topic -> messages read
    expected: dict[str, int] | None = None  # topic -> messages metadata.yaml lists for this file (None: unknown)

    def lost(self) -> dict[str, int] | None:
        if self.expected is None:
            return None
        return {t: n - self.read.get(t, 0) for t, n in self.expected.items() if n - self.read.get(t, 0) > 0}

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "reason": self.reason, "read": dict(self.read), "expected": self.expected,
                "lost": self.lost()}

    def describe(self) -> str:
        return describe_damage(self.as_dict())


def describe_damage(d: dict[str, Any]) -> str:
    """One line for a FileDamage dict (as stored in reports)."""
    lost = d.get("lost")
    tail = (f"; lost {sum(lost.values())} messages ({', '.join(f'{t}: {n}' for t, n in sorted(lost.items()))})"
            if lost else "; how many messages are lost is unknown" if lost is None else "")
    return f"{d['file']}: read {sum(d['read'].values())} messages, then {d['reason']}{tail}"


def _sqlite_damaged(path: Path) -> str | None:
    """Why this .db3 cannot be read whole (None when it can)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return "not an sqlite3 database (header missing)"
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    if pages and pages * page_size > size:
        return f"file is {size} bytes, its header says {pages * page_size} (truncated)"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"sqlite: {exc}"
    return None if result == [("ok",)] else f"sqlite quick_check: {result[0][0]}"


def _mcap_damaged(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - 8))
        tail = f.read(8)
    if head != MCAP_MAGIC:
        return "not an mcap file (no leading magic)"
    return None if tail == MCAP_MAGIC else "no end magic (the file was cut off)"


def _read_metadata(path: Path) -> dict[str, Any] | None:
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return None
    import yaml

    try:
        doc = yaml.safe_load(meta.read_text())
        return doc["rosbag2_bagfile_information"]
    except Exception as exc:  # noqa: BLE001 - any YAML/shape problem is the same user error
        raise BagOpenError(f"{meta}: not a rosbag2 metadata file ({type(exc).__name__}: {exc})") from exc


class BagSource:
    """``topics`` (topic -> (msgtype, message count)), ``messages(topics)`` yielding (topic, msgtype, log time ns,
    raw CDR bytes), ``deserialize(raw, msgtype)``, and ``damage`` (FileDamage per damaged storage file, filled as
    ``messages`` runs; empty for a healthy bag)."""

    def __init__(self, path: str | Path) -> None:
        from dsa_core.bags.messages import make_typestore

        self.path = Path(path)
        if not self.path.exists():
            raise BagOpenError(f"{self.path}: no such bag directory")
        if not self.path.is_dir():
            raise BagOpenError(f"{self.path}: a rosbag2 bag is a directory (with metadata.yaml and its storage files)")
        self.typestore = make_typestore()
        self.metadata = _read_metadata(self.path)
        if self.metadata is not None:
            self.files = [self.path / f for f in self.metadata.get("relative_file_paths", [])]
            missing = [f.name for f in self.files if not f.is_file()]
            if missing:
                raise BagOpenError(f"{self.path}: storage files listed in metadata.yaml are missing: {missing}")
        else:
            self.files = sorted(p for p in self.path.iterdir() if p.suffix in (".mcap", ".db3"))
            if not self.files:
                raise BagOpenError(f"{self.path}: not a rosbag2 bag (no metadata.yaml, no .mcap or .db3 file)")
        self.problems: dict[str, list[str]] = {}
        for f in self.files:
            problem = _mcap_damaged(f) if f.suffix == ".mcap" else _sqlite_damaged(f)
            if problem:
                self.problems.setdefault(f.name, []).append(problem)
        if self.metadata is None:
            for f in self.files:
                self.problems.setdefault(f.name, []).insert(0, "no metadata.yaml (the recorder did not close the bag)")
        self.damage: list[FileDamage] = []
        self.salvage = bool(self.problems)
        self.topics = self._salvage_topics() if self.salvage else self._healthy_topics()
        if self.salvage:
            log.warning("bag %s is damaged (%s): reading what can be read", self.path,
                        "; ".join(f"{k}: {', '.join(v)}" for k, v in self.problems.items()))

    # --- healthy bags: rosbags ------------------------------------------------------------------------------------

    def _reader(self):
        from rosbags.highlevel import AnyReader

        return AnyReader([self.path], default_typestore=self.typestore)

    def _healthy_topics(self) -> dict[str, tuple[str, int]]:
        try:
            with self._reader() as reader:
                out: dict[str, tuple[str, int]] = {}
                for conn in reader.connections:
                    msgtype, count = out.get(conn.topic, (conn.msgtype, 0))
                    out[conn.topic] = (msgtype, count + conn.msgcount)
                return out
        except Exception as exc:  # noqa: BLE001 - rosbags' errors on unreadable input are user errors here
            raise BagOpenError(f"{self.path}: cannot read the bag ({type(exc).__name__}: {exc})") from exc

    # --- damaged bags: read file by file ------------------------------------------------------------------------

    def _expected(self, file: Path) -> dict[str, int] | None:
        """topic -> count for one file, from metadata.yaml (only known per topic for single-file bags)."""
        if self.metadata is None or len(self.files) != 1:
            return None
        return {t["topic_metadata"]["name"]: int(t["message_count"])
                for t in self.metadata.get("topics_with_message_count", [])}

    def _salvage_topics(self) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        if self.metadata is not None:
            for t in self.metadata.get("topics_with_message_count", []):
                out[t["topic_metadata"]["name"]] = (t["topic_metadata"]["type"], int(t["message_count"]))
            return out
        for file in self.files:  # no metadata: the storage files name their topics
            for topic, msgtype in self._file_topics(file).items():
                out.setdefault(topic, (msgtype, 0))
        for topic, msgtype, _, _ in self._salvage_messages(set(out), record=False):
            out[topic] = (msgtype, out[topic][1] + 1)
        return out

    def _file_topics(self, file: Path) -> dict[str, str]:
        if file.suffix == ".db3":
            con = self._sqlite(file)
            try:
                return {name: msgtype for name, msgtype in con.execute("SELECT name, type FROM topics")}
            except sqlite3.DatabaseError:
                return {}
            finally:
                con.close()
        topics: dict[str, str] = {}
        for kind, rec in self._mcap_records(file, None):
            if kind == "channel":
                topics[rec[0]] = rec[1]
        return topics

    @staticmethod
    def _sqlite(file: Path) -> sqlite3.Connection:
        con = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        con.execute("PRAGMA writable_schema=ON")  # open a file shorter than its header says (read-only anyway)
        return con

    def _mcap_records(self, file: Path, stop: list[str] | None) -> Iterator[tuple[str, Any]]:
        """("channel", (topic, msgtype, id)) and ("message", (channel id, log time, data)) until the damage; the
        reason reading stopped goes into ``stop``."""
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        schemas: dict[int, str] = {}
        with open(file, "rb") as f:
            reader = StreamReader(f, skip_magic=False, emit_chunks=False)
            try:
                for rec in reader.records:
                    if isinstance(rec, Schema):
                        schemas[rec.id] = rec.name
                    elif isinstance(rec, Channel):
                        yield "channel", (rec.topic, schemas.get(rec.schema_id, ""), rec.id)
                    elif isinstance(rec, Message):
                        yield "message", (rec.channel_id, rec.log_time, rec.data)
            except Exception as exc:  # noqa: BLE001 - EndOfFile, bad record, bad chunk: the damage
                if stop is not None:
                    stop.append(f"mcap stopped at byte {f.tell()}: {type(exc).__name__} {exc}".rstrip())

    def _salvage_messages(self, topics: set[str], record: bool = True) -> Iterator[tuple[str, str, int, bytes]]:
        for file in self.files:
            read: dict[str, int] = {}
            stop: list[str] = []
            if file.suffix == ".db3":
                con = self._sqlite(file)
                try:
                    ids = {i: (name, msgtype) for i, name, msgtype in con.execute("SELECT id, name, type FROM topics")}
                    cursor = con.execute("SELECT topic_id, timestamp, data FROM messages")  # rowid = write order
                    while True:
                        try:
                            row = cursor.fetchone()
                        except sqlite3.DatabaseError as exc:
                            stop.append(f"sqlite stopped: {exc}")
                            break
                        if row is None:
                            break
                        topic, msgtype = ids.get(row[0], (None, None))
                        if topic in topics:
                            read[topic] = read.get(topic, 0) + 1
                            yield topic, msgtype, int(row[1]), bytes(row[2])
                except sqlite3.DatabaseError as exc:
                    stop.append(f"sqlite: {exc}")
                finally:
                    con.close()
            else:
                channels: dict[int, tuple[str, str]] = {}
                for kind, rec in self._mcap_records(file, stop):
                    if kind == "channel":
                        channels[rec[2]] = (rec[0], rec[1])
                    elif rec[0] in channels and channels[rec[0]][0] in topics:
                        topic, msgtype = channels[rec[0]]
                        read[topic] = read.get(topic, 0) + 1
                        yield topic, msgtype, int(rec[1]), bytes(rec[2])
            reason = "; ".join(self.problems.get(file.name, []) + stop[:1])
            if record and reason:
                expected = self._expected(file)
                if expected is not None:
                    expected = {t: n for t, n in expected.items() if t in topics}
                self.damage.append(FileDamage(file.name, reason, read, expected))

    # --- the interface ------------------------------------------------------------------------------------------

    def messages(self, topics: set[str] | list[str]) -> Iterator[tuple[str, str, int, bytes]]:
        topics = set(topics)
        if self.salvage:
            self.damage.clear()
            yield from self._salvage_messages(topics)
            return
        read: dict[str, int] = {}
        try:
            with self._reader() as reader:
                conns = [c for c in reader.connections if c.topic in topics]
                for conn, log_time, raw in reader.messages(connections=conns):
                    read[conn.topic] = read.get(conn.topic, 0) + 1
                    yield conn.topic, conn.msgtype, log_time, raw
        except Exception as exc:  # noqa: BLE001 - damage the up-front checks did not see (e.g. a corrupt chunk)
            expected = {t: n for t, (_, n) in self.topics.items() if t in topics}
            self.damage.append(FileDamage(", ".join(f.name for f in self.files),
                                          f"rosbags stopped: {type(exc).__name__}: {exc}", read, expected))

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self.typestore.deserialize_cdr(raw, msgtype)


def open_bag(path: str | Path) -> BagSource:
    return BagSource(path)
