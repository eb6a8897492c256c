"""Verifies access tokens of a running myapi as another service would, knowing only its base
URL: the RFC 8414 metadata names the JWK Set, which PyJWT's PyJWKClient and Authlib's JOSE
fetch. Usage: jwks_verifiers.py BASE_URL
ACCESS_TOKEN. Exits non-zero on any failure, and when a token signed with another key passes."""

import sys

import jwt
import requests
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.jose.errors import BadSignatureError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

base, token = sys.argv[1:3]

# The JWK Set's URL and the issuer to expect, as a resource server configures them: from the
# authorization server's metadata (RFC 8414), whose issuer is the server's base URL.
metadata = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
assert metadata["issuer"] == base, metadata
jwks_url, issuer = metadata["jwks_uri"], metadata["issuer"]

header = jwt.get_unverified_header(token)
assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt", header

# PyJWT: the client fetches the set and picks the key by the token's kid.
signing_key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, signing_key.key, algorithms=["EdDSA"], audience="myapi",
                    issuer=issuer, options={"require": ["exp", "iat", "sub", "jti"]})
assert claims["sub"].isdigit(), claims

# Authlib: the same with its own JOSE implementation.
key_set = JsonWebKey.import_key_set(requests.get(jwks_url, timeout=10).json())
decoded = JsonWebToken(["EdDSA"]).decode(
    token, key_set, claims_options={"iss": {"essential": True, "value": issuer}})
decoded.validate()
assert decoded["sub"] == claims["sub"] and decoded["aud"] == "myapi", decoded

# A token with the same kid and claims signed with another key fails both.
forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                    headers={"kid": header["kid"], "typ": "at+jwt"})
try:
    jwt.decode(forged, signing_key.key, algorithms=["EdDSA"], audience="myapi")
    raise AssertionError("PyJWT accepted a forged token")
except jwt.InvalidSignatureError:
    pass
try:
    JsonWebToken(["EdDSA"]).decode(forged, key_set)
    raise AssertionError("Authlib accepted a forged token")
except BadSignatureError:
    pass
print("ok")
