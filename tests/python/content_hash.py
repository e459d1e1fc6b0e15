#!/usr/bin/env python3
"""Content hash v1 of a notice (docs/wire-contract.md, "Content hash (v1),
byte by byte"), from the notice's JSON as `karpoosheh notice --json` shows
it under "notice", with Python's standard library only.

  content_hash.py < notice.json      prints the 64 hex digits
"""
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone


def field(h, b):
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)


def recipient_key(address):
    digits = address.split("@")[0]
    kind = b"p" if len(digits) == 10 else b"l"
    return kind + int(digits).to_bytes(8, "big")


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def millis(text):
    """Whole milliseconds since the epoch, in integers (floats lose them)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (t - EPOCH) // timedelta(milliseconds=1)


def content_hash(n):
    h = hashlib.sha256()
    field(h, n["agency"].encode())
    field(h, n["reference"].encode())
    field(h, recipient_key(n["recipient"]))
    field(h, n["kind"].encode())
    field(h, n["title"].encode())
    field(h, n["body"].encode())
    attachments = n.get("attachments") or []
    field(h, len(attachments).to_bytes(8, "little"))
    for a in attachments:
        field(h, a["name"].encode())
        field(h, a["media_type"].encode())
        field(h, a["size"].to_bytes(8, "little"))
        field(h, a["sha256"].encode())
    field(h, bytes([n["min_access_level"]]))
    field(h, n["life_event"].encode())
    field(h, millis(n["expires_at"]).to_bytes(8, "little", signed=True))
    return h.hexdigest()


if __name__ == "__main__":
    doc = json.load(sys.stdin)
    print(content_hash(doc.get("notice", doc)))
