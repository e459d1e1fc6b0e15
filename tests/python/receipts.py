#!/usr/bin/env python3
"""An independent verifier of Karpoosheh receipts (docs/wire-contract.md,
"Receipt evidence"), written from the spec with Python's standard library
and the `cryptography` package: no code shared with the engine.

  receipts.py JWKS_FILE < receipts.ndjson

Reads every line first: the `batch_signed` receipts (a signed batch and
its leaves) and the receipts that name them, in any order. For every
batch: its leaves make its RFC 9162 root, and the node's Ed25519
signature over its head holds. For every receipt: its chain hash against
its content, and its leaf at its index in the batch it names (of its own
agency). Then, per notice, that consecutive events link and that no
number holds two different events (a forked chain).
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


def mth(hashes):
    """RFC 9162, section 2.1.1, over leaf hashes."""
    n = len(hashes)
    if n == 0:
        return sha256()
    if n == 1:
        return hashes[0]
    k = 1
    while k << 1 < n:
        k <<= 1
    return sha256(b"\x01", mth(hashes[:k]), mth(hashes[k:]))


def verify_batch(batch, keys):
    """A batch_signed receipt: returns its leaves once they make its root
    and its signature holds."""
    leaves = [b64d(x) for x in batch["leaves"]]
    if len(leaves) != batch["size"] or any(len(x) != 32 for x in leaves):
        raise ValueError("the leaves do not match the batch size")
    if b64e(mth([sha256(b"\x00", x) for x in leaves])) != batch["root"]:
        raise ValueError("the leaves do not make the batch's root")
    head = jcs({"kid": batch["kid"], "root": batch["root"], "signed_at": batch["signed_at"],
                "size": batch["size"], "typ": "karpoosheh-receipt-batch"})
    key = keys.get(batch["kid"])
    if key is None:
        raise ValueError(f"unknown key {batch['kid']}")
    try:
        key.verify(b64d(batch["signature"]), head)
    except InvalidSignature:
        raise ValueError("the batch signature does not verify")
    return leaves


def verify(receipt, batches):
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
        leaf = h
    else:
        leaf = sha256(content)
    b = ev["batch"]
    batch = batches.get((receipt["agency"], b["root"]))
    if batch is None:
        raise ValueError("its batch (with a valid signature) is not among the lines")
    i = b["index"]
    if not isinstance(i, int) or i < 0 or i >= len(batch) or batch[i] != leaf:
        raise ValueError("the receipt is not the leaf it claims in its batch")
    return chain


def main():
    with open(sys.argv[1]) as f:
        jwks = json.load(f)
    keys = {k["kid"]: Ed25519PublicKey.from_public_bytes(b64d(k["x"]))
            for k in jwks["keys"] if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"}
    report = {"receipts": 0, "verified": 0, "chained": 0, "batches": 0, "failures": []}
    lines = [(n, json.loads(line)) for n, line in enumerate(sys.stdin, 1) if line.strip()]
    batches = {}
    for n, r in lines:
        if r.get("event") != "batch_signed":
            continue
        report["batches"] += 1
        try:
            batches[(r["agency"], r["root"])] = verify_batch(r, keys)
        except (ValueError, KeyError, TypeError) as e:
            report["failures"].append({"line": n, "problem": str(e)})
    chains = {}
    for n, receipt in lines:
        if receipt.get("event") == "batch_signed":
            continue
        report["receipts"] += 1
        try:
            chain = verify(receipt, batches)
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
