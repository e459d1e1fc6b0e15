#!/usr/bin/env python3
"""An independent issuer of identity-provider tokens (JWT, RFC 7519, in
JWS compact form, RFC 7515), written from the RFCs with Python's standard
library and the `cryptography` package: no code shared with the engine.

  tokens.py DIR SUBJECT ISSUER AUDIENCE

Makes an Ed25519, a P-256 and an RSA-2048 key, writes their public JWK Set
to DIR/idp.jwks, and prints one JSON object of tokens for SUBJECT: one per
algorithm (EdDSA, ES256, RS256), and refused ones (expired, for another
audience, signed by a key not in the set under a trusted kid).
"""
import base64
import json
import sys
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return n.to_bytes(length, "big")


def main():
    out_dir, subject, issuer, audience = sys.argv[1:5]
    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = ed25519.Ed25519PrivateKey.generate()
    nums = p256.public_key().public_numbers()
    rnums = rsa_key.public_key().public_numbers()
    jwks = {"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "py-ed", "use": "sig",
         "x": b64(ed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))},
        {"kty": "EC", "crv": "P-256", "kid": "py-ec", "alg": "ES256",
         "x": b64(uint(nums.x, 32)), "y": b64(uint(nums.y, 32))},
        {"kty": "RSA", "kid": "py-rsa", "alg": "RS256",
         "n": b64(uint(rnums.n)), "e": b64(uint(rnums.e))},
    ]}
    with open(f"{out_dir}/idp.jwks", "w") as f:
        json.dump(jwks, f)

    def sign(alg, kid, claims, signer):
        header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
        body = b64(json.dumps(claims).encode())
        data = f"{header}.{body}".encode()
        return f"{header}.{body}.{b64(signer(data))}"

    def es256(data):
        r, s = decode_dss_signature(p256.sign(data, ec.ECDSA(hashes.SHA256())))
        return uint(r, 32) + uint(s, 32)

    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "acr": "2",
              "exp": now + 300, "nbf": now - 5, "azp": "inbox-py"}
    tokens = {
        "eddsa": sign("EdDSA", "py-ed", claims, ed.sign),
        "es256": sign("ES256", "py-ec", claims, es256),
        "rs256": sign("RS256", "py-rsa", claims,
                      lambda d: rsa_key.sign(d, padding.PKCS1v15(), hashes.SHA256())),
        "expired": sign("EdDSA", "py-ed", dict(claims, exp=now - 3600), ed.sign),
        "wrong_audience": sign("EdDSA", "py-ed", dict(claims, aud="elsewhere"), ed.sign),
        "stranger": sign("EdDSA", "py-ed", claims, stranger.sign),
    }
    print(json.dumps(tokens))


if __name__ == "__main__":
    main()
