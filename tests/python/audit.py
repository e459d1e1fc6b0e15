#!/usr/bin/env python3
"""An independent verifier of a Karpoosheh node's audit log as published
on its audit topic (docs/wire-contract.md, "Audit log"), written from the
spec with Python's standard library and the `cryptography` package: no
code shared with the engine.

  audit.py JWKS_FILE < tree-heads.ndjson

Reads the tree-head messages in the order the topic holds them (one log).
For each: the node's Ed25519 signature over the canonical head, and the
RFC 9162 consistency proof from the previous distinct head it carries,
which must be the last head already seen (a head published again after a
restart is identical to one seen and is skipped). Sizes never shrink.
Prints one JSON object: counts, the last size and root, and each failure.
Exits 1 if anything does not hold.
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64d(text):
    if "=" in text:
        raise ValueError("padding in base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jcs(value):
    """RFC 8785 for the heads: ASCII keys, strings and integers only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162, section 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_root] + proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def signed_bytes(m):
    return jcs({"kid": m["kid"], "log": m["log"], "root": m["root"],
                "size": m["size"], "timestamp": m["timestamp"],
                "typ": "karpoosheh-tree-head"})


def main():
    with open(sys.argv[1]) as f:
        jwks = json.load(f)
    keys = {k["kid"]: Ed25519PublicKey.from_public_bytes(b64d(k["x"]))
            for k in jwks["keys"] if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"}
    report = {"messages": 0, "heads": 0, "republished": 0, "consistent": 0,
              "size": 0, "root": None, "failures": []}
    last = None
    seen = set()
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        report["messages"] += 1
        m = json.loads(line)
        try:
            if m.get("type") != "tree_head":
                raise ValueError(f"not a tree head: {m.get('type')!r}")
            key = keys.get(m["kid"])
            if key is None:
                raise ValueError(f"unknown key {m['kid']}")
            try:
                key.verify(b64d(m["signature"]), signed_bytes(m))
            except InvalidSignature:
                raise ValueError("the tree head's signature does not verify")
            if last is not None and m["log"] != last["log"]:
                raise ValueError(f"a head of log {m['log']} among log {last['log']}'s")
            ident = (m["size"], m["root"], m["timestamp"])
            if ident in seen:
                report["republished"] += 1
                continue
            if last is not None:
                c = m.get("consistency")
                if c is None:
                    raise ValueError("no consistency proof from the previous head")
                if c["from_size"] != last["size"] or c["from_root"] != last["root"]:
                    raise ValueError(f"the proof starts from size {c['from_size']}, not the last head's {last['size']}")
                if m["size"] < last["size"]:
                    raise ValueError("the tree shrank")
                if not verify_consistency(last["size"], m["size"], b64d(last["root"]),
                                          b64d(m["root"]), [b64d(p) for p in c["path"]]):
                    raise ValueError(f"size {m['size']} is not an extension of size {last['size']}: history was rewritten")
                report["consistent"] += 1
        except (ValueError, KeyError, TypeError) as e:
            report["failures"].append({"line": n, "problem": str(e)})
            continue
        seen.add(ident)
        report["heads"] += 1
        last = m
        report["size"] = m["size"]
        report["root"] = m["root"]
    print(json.dumps(report))
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
