"""Logs in to a running myapi with two real OAuth2 client libraries (requests-oauthlib and
Authlib), calls a protected route with the token each returns, and checks that a wrong
password surfaces as the library's own invalid_grant error. Usage: oauth2_clients.py BASE_URL
EMAIL PASSWORD. Exits non-zero on any failure."""

import os
import sys

os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # the test server speaks plain HTTP on loopback

from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import InvalidGrantError, LegacyApplicationClient
from requests_oauthlib import OAuth2Session

base, email, password = sys.argv[1:4]
token_url = f"{base}/token"

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
me = authlib.get(f"{base}/users/me")
assert me.status_code == 200 and me.json()["email"] == email, me.text
print("ok: requests-oauthlib and Authlib")
