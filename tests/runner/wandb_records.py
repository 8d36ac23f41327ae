"""Read an offline W&B run back with W&B's own record schema (`wandb.proto.wandb_internal_pb2.Record`).

An offline run's `run-<id>.wandb` file is W&B's transaction log: a 7-byte header (`:W&B`, magic,
version), then LevelDB-log framed records (32 KiB blocks; each chunk a 7-byte header of CRC,
length and type FULL/FIRST/MIDDLE/LAST), each a serialized Record. `wandb sync` uploads the same
records; W&B 0.31 no longer ships its Python reader, so the framing is undone here and every record
is parsed by W&B's protobuf class.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
    return out


@dataclass
class OfflineRun:
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    step_metrics: dict[str, str] = field(default_factory=dict)  # metric name or glob -> its x-axis
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: Path | None = None


def read_run(run_dir: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    (log,) = run_dir.glob("run-*.wandb")
    run = OfflineRun(files=run_dir / "files")
    for raw in raw_records(log):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.group, run.job_type, run.name, run.tags = r.run_group, r.job_type, r.display_name, list(r.tags)
            run.config.update({c.key: json.loads(c.value_json) for c in r.config.update})
        elif kind == "config":
            run.config.update({c.key: json.loads(c.value_json) for c in record.config.update})
        elif kind == "metric":
            run.step_metrics[record.metric.name or record.metric.glob_name] = record.metric.step_metric
        elif kind == "history":
            run.history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                for i in record.history.item})
        elif kind == "summary":
            run.summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                for i in record.summary.update})
    return run


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    return [read_run(d) for d in sorted(wandb_dir.glob("offline-run-*"))]
