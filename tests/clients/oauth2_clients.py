"""Logs in to a running myapi with two real OAuth2 client libraries (requests-oauthlib and
Authlib), at the token endpoint its RFC 8414 metadata names, calls a protected route with the token each returns, checks that a wrong password
surfaces as the library's own invalid_grant error, and that each library refreshes by itself
with the refresh token once its access token has expired. Usage: oauth2_clients.py BASE_URL
EMAIL PASSWORD. Exits non-zero on any failure."""

import base64
import json
import os
import sys
import time

os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # the test server speaks plain HTTP on loopback

from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import InvalidGrantError, LegacyApplicationClient
from requests_oauthlib import OAuth2Session

base, email, password = sys.argv[1:4]

# Discovery (RFC 8414): the endpoints come from the metadata document, whose issuer is the
# server's base URL (the test starts the server with `auth.issuer` set to it).
import requests  # noqa: E402 (both libraries bring it)

metadata = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
assert metadata["issuer"] == base, metadata
assert "password" in metadata["grant_types_supported"], metadata
assert metadata["response_types_supported"] == [], metadata
token_url = metadata["token_endpoint"]

session = OAuth2Session(client=LegacyApplicationClient(client_id="myapi-docs"))
token = session.fetch_token(token_url=token_url, username=email, password=password,
                            client_id="myapi-docs", include_client_id=True)
assert token["token_type"].lower() == "bearer" and token["expires_in"] > 0, token
movies = session.get(f"{base}/movies/new", params={"year": 1990, "rating": 9})
assert movies.status_code == 200, movies.text
assert "The Shawshank Redemption" in [m["title"] for m in movies.json()], movies.text

try:
    OAuth2Session(client=LegacyApplicationClient(client_id="x")).fetch_token(
        token_url=token_url, username=email, password="not-the-password")
    raise AssertionError("a wrong password was accepted")
except InvalidGrantError:
    pass

authlib = AuthlibSession(client_id="myapi-docs", client_secret="", token_endpoint_auth_method="client_secret_basic")
token = authlib.fetch_token(token_url, username=email, password=password, grant_type="password")
# Authlib sends its client_id in HTTP Basic (RFC 6749 §2.3.1): the token names it.
payload = token["access_token"].split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
assert claims["client_id"] == "myapi-docs", claims
me = authlib.get(f"{base}/users/me")
assert me.status_code == 200 and me.json()["email"] == email, me.text

# Automatic refresh: each library keeps `expires_at` and refreshes before a call once it is
# past. Moving it into the past is what waiting `expires_in` seconds would do.
refreshed = []
session = OAuth2Session(client=LegacyApplicationClient(client_id="myapi-docs"),
                        auto_refresh_url=token_url,
                        auto_refresh_kwargs={"client_id": "myapi-docs"},
                        token_updater=refreshed.append)
first = session.fetch_token(token_url=token_url, username=email, password=password,
                            client_id="myapi-docs", include_client_id=True)
assert first.get("refresh_token"), first
session.token = {**first, "expires_at": time.time() - 10}
me = session.get(f"{base}/users/me")
assert me.status_code == 200 and me.json()["email"] == email, me.text
assert len(refreshed) == 1, refreshed
assert refreshed[0]["refresh_token"] != first["refresh_token"], "the refresh token rotates"
assert session.get(f"{base}/users/me").status_code == 200

updated = []
authlib = AuthlibSession(client_id="myapi-docs", client_secret="",
                         token_endpoint_auth_method="client_secret_basic",
                         token_endpoint=token_url,
                         update_token=lambda token, **_: updated.append(token))
first = authlib.fetch_token(token_url, username=email, password=password, grant_type="password")
assert first.get("refresh_token"), first
authlib.token = {**first, "expires_at": int(time.time()) - 10}
me = authlib.get(f"{base}/users/me")
assert me.status_code == 200 and me.json()["email"] == email, me.text
assert len(updated) == 1 and updated[0]["refresh_token"] != first["refresh_token"], updated

# Authlib revokes the refresh token at the discovered revocation endpoint; it then refreshes
# no more.
revoked = authlib.revoke_token(metadata["revocation_endpoint"], token=updated[0]["refresh_token"],
                               token_type_hint="refresh_token")
assert revoked.status_code == 200, revoked.text
again = requests.post(token_url, data={"grant_type": "refresh_token",
                                       "refresh_token": updated[0]["refresh_token"]}, timeout=10)
assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
print("ok: requests-oauthlib and Authlib, discovering the endpoints and refreshing by themselves")
