#!/usr/bin/env python3
"""An independent signer and verifier of Karpoosheh's signed inputs
(docs/wire-contract.md, "Signed inputs"), written from the spec with the
`cryptography` package only: no code shared with the engine.

  jws.py sign KEY.jwk KIND < message.json      prints the signed message
  jws.py verify PUBLIC_X KIND < signed.json    prints the payload, or exits 1

KIND is confirmation or profile; PUBLIC_X is the key's base64url public key.
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

TYP = {"confirmation": "karpoosheh-confirmation", "profile": "karpoosheh-profile"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    if "=" in text or any(c not in
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          for c in text):
        raise ValueError("not base64url without padding")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(jwk: dict, kind: str, payload: bytes) -> str:
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    key = Ed25519PrivateKey.from_private_bytes(from_b64url(jwk["d"]))
    header = json.dumps({"alg": "EdDSA", "kid": jwk["kid"], "typ": TYP[kind]},
                        separators=(",", ":")).encode()
    protected, body = b64url(header), b64url(payload)
    signature = key.sign(f"{protected}.{body}".encode("ascii"))
    return json.dumps({"protected": protected, "payload": body,
                       "signature": b64url(signature)}, separators=(",", ":"))


def verify(public_x: str, kind: str, signed: str) -> bytes:
    jws = json.loads(signed)
    if set(jws) != {"protected", "payload", "signature"}:
        raise ValueError(f"members {sorted(jws)}")
    header = json.loads(from_b64url(jws["protected"]))
    if set(header) != {"alg", "kid", "typ"} or header["alg"] != "EdDSA":
        raise ValueError(f"header {header}")
    if header["typ"] != TYP[kind]:
        raise ValueError(f"typ {header['typ']}")
    key = Ed25519PublicKey.from_public_bytes(from_b64url(public_x))
    key.verify(from_b64url(jws["signature"]),
               f"{jws['protected']}.{jws['payload']}".encode("ascii"))
    return from_b64url(jws["payload"])


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in ("sign", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    _, op, arg, kind = sys.argv
    data = sys.stdin.buffer.read().strip()
    if op == "sign":
        with open(arg) as f:
            print(sign(json.load(f), kind, data))
        return 0
    try:
        sys.stdout.buffer.write(verify(arg, kind, data.decode()) + b"\n")
        return 0
    except (InvalidSignature, ValueError, KeyError) as e:
        print(f"does not verify: {e!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
