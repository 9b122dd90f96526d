"""Read back the records of an offline W&B run file (``run-*.wandb``); wandb ships no reader.

The file is a 7-byte header (":W&B", a 2-byte magic, a version byte), then LevelDB's log format:
32 KiB blocks of chunks, each a 7-byte header (crc32 4, length 2, type 1, little-endian) and its
data; a record is one FULL chunk or FIRST, MIDDLE..., LAST. Each record is a serialised
``wandb_internal_pb2.Record``.
"""

import json
import struct
import sys
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    """The file's records; a record cut short at its end (a process killed while wandb wrote
    it) is left out."""
    if "wandb" in sys.modules:  # its service process writes the file, and may not be done yet
        sys.modules["wandb"].teardown()
    raw = Path(path).read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B run file"
    found, pos, parts = [], HEADER, b""
    while pos + HEADER <= len(raw):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + HEADER])
        data = raw[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if len(data) < length:  # cut short
            break
        if kind == 0 and length == 0:  # zero padding at the end of what was written
            break
        parts = data if kind in (FULL, FIRST) else parts + data
        if kind in (FULL, LAST):
            record = pb.Record()
            try:
                record.ParseFromString(parts)
            except DecodeError:
                if pos + HEADER <= len(raw.rstrip(b"\0")):  # not the last: a damaged file
                    raise
                break
            found.append(record)
    return found


def summary(path: Path) -> dict:
    """What a test needs of one run: its identity, config, history rows and exit code."""
    run, config, history, exit_code = None, {}, [], None
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config.update(_items(record.run.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
        elif kind == "history":
            history.append(_items(record.history.item))
        elif kind == "exit":
            exit_code = record.exit.exit_code
    return {
        "id": run.run_id,
        "group": run.run_group,
        "name": run.display_name,
        "tags": list(run.tags),
        "job_type": run.job_type,
        "config": config,
        "history": history,
        "exit_code": exit_code,
    }


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}
