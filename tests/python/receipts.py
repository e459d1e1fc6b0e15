#!/usr/bin/env python3
"""An independent verifier of Karpoosheh receipts (docs/wire-contract.md,
"Receipt evidence"), written from the spec with Python's standard library
and the `cryptography` package: no code shared with the engine.

  receipts.py JWKS_FILE < receipts.ndjson

For every receipt: its chain hash against its content, its leaf's RFC 9162
inclusion proof against the batch root, and the node's Ed25519 signature
over the batch head. Then, per notice, that consecutive events link and that no number holds
two different events (a forked chain).
Prints one JSON object: counts, and each failure with its line and why.
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


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jcs(value):
    """RFC 8785 for JSON without fractions (the receipts carry none)."""
    def check(v):
        if isinstance(v, float):
            raise ValueError("a fraction")
        if isinstance(v, dict):
            for k, x in v.items():
                check(x)
        if isinstance(v, list):
            for x in v:
                check(x)
    check(value)
    # Keys sorted by UTF-16 code units; every key here is ASCII, where that
    # is the order Python sorts strings in.
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def root_from_path(index, size, leaf, path):
    """RFC 9162, section 2.1.3.2."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = sha256(b"\x01", p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01", r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify(receipt, keys):
    ev = receipt.get("evidence")
    if ev is None:
        raise ValueError("no evidence")
    body = dict(receipt)
    del body["evidence"]
    content = jcs(body)
    chain = ev.get("chain")
    if chain is not None:
        h = sha256(b64d(chain["prev"]), content)
        if b64e(h) != chain["hash"]:
            raise ValueError("the chain hash is not the hash of this receipt")
        leaf_input = h
    else:
        leaf_input = sha256(content)
    b = ev["batch"]
    path = [b64d(p) for p in b["path"]]
    root = root_from_path(b["index"], b["size"], sha256(b"\x00", leaf_input), path)
    if root is None or b64e(root) != b["root"]:
        raise ValueError("the inclusion proof does not lead to the signed root")
    head = jcs({"kid": b["kid"], "root": b["root"], "signed_at": b["signed_at"],
                "size": b["size"], "typ": "karpoosheh-receipt-batch"})
    key = keys.get(b["kid"])
    if key is None:
        raise ValueError(f"unknown key {b['kid']}")
    try:
        key.verify(b64d(b["signature"]), head)
    except InvalidSignature:
        raise ValueError("the batch signature does not verify")
    return chain


def main():
    with open(sys.argv[1]) as f:
        jwks = json.load(f)
    keys = {k["kid"]: Ed25519PublicKey.from_public_bytes(b64d(k["x"]))
            for k in jwks["keys"] if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"}
    report = {"receipts": 0, "verified": 0, "chained": 0, "failures": []}
    chains = {}
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        report["receipts"] += 1
        receipt = json.loads(line)
        try:
            chain = verify(receipt, keys)
        except (ValueError, KeyError, TypeError) as e:
            report["failures"].append({"line": n, "problem": str(e)})
            continue
        report["verified"] += 1
        if chain is not None:
            report["chained"] += 1
            code = receipt["tracking_code"]
            links = chains.setdefault(code, {})
            seen = links.get(chain["seq"])
            if seen is not None and seen["hash"] != chain["hash"]:
                # Two different events under one number: a forked chain.
                report["failures"].append({"notice": code, "problem": f"two different events numbered {chain['seq']}"})
            links[chain["seq"]] = chain
    for code, links in chains.items():
        for seq, link in links.items():
            before = links.get(seq - 1)
            if before is not None and before["hash"] != link["prev"]:
                report["failures"].append({"notice": code, "problem": f"event {seq} does not link to event {seq - 1}"})
            if seq == 1 and b64d(link["prev"]) != bytes(32):
                report["failures"].append({"notice": code, "problem": "event 1 does not start from zeros"})
    print(json.dumps(report))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
