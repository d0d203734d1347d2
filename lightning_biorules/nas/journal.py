"""The trial journal of a search: one JSON line per finished trial in ``work_dir/trials.jsonl``.

Trials append their record (sample, arch, status, metric, per-epoch accuracies, duration, fingerprint)
before reporting to NNI; ``biorules search --resume`` answers candidates already journaled from it, and
``biorules report`` reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from .strategies import sample_key

__all__ = ["JOURNAL_FILE", "append_journal", "journal_index", "read_journal", "trial_fingerprint"]

_logger = logging.getLogger(__name__)

#: the trial journal in a search's ``work_dir`` (JSON lines, one finished trial each)
JOURNAL_FILE = "trials.jsonl"


def append_journal(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path``: a single ``write`` on an ``O_APPEND``
    descriptor under an exclusive ``flock`` (concurrent trials never interleave), then fsync."""
    import fcntl

    line = (json.dumps(dict(record), default=str) + "\n").encode()
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_journal(path: str | os.PathLike) -> List[Dict[str, Any]]:
    """Records of a journal, in order; a missing file is empty and an unreadable line (a write cut
    by a kill) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            _logger.warning("skipping an unreadable journal line in %s", path)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def trial_fingerprint(space: str, space_options: Mapping[str, Any], eval_args: Mapping[str, Any]) -> str:
    """Hash of everything that determines a trial's result besides its arch (space, trial data,
    trainer, model options, seed); paths of caches and outputs are left out."""
    data = {k: v for k, v in dict(eval_args.get("data") or {}).items() if k not in ("cache_dir", "num_workers")}
    payload = {
        "space": space,
        "space_options": dict(space_options),
        "data": data,
        "trainer": eval_args.get("trainer"),
        "model_kwargs": eval_args.get("model_kwargs"),
        "seed": eval_args.get("seed"),
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def journal_index(records: Sequence[Mapping[str, Any]], fingerprint: str) -> Dict[str, Dict[str, Any]]:
    """``sample_key -> record`` of the finished trials with ``fingerprint`` (the last one wins)."""
    index: Dict[str, Dict[str, Any]] = {}
    for record in records:
        if record.get("fingerprint") == fingerprint and isinstance(record.get("sample"), dict):
            if record.get("status") in ("trained", "failed"):
                index[sample_key(record["sample"])] = dict(record)
    return index
