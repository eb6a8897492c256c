"""Schemathesis hooks for tests/http/fuzz.rs (loaded through SCHEMATHESIS_HOOKS).

POST /movies/ takes an Idempotency-Key, which names one request: the same key with another
body is refused with 422, by design. The generator repeats small values (such as "0") across
requests with other bodies, which would read as valid data refused. So every well-formed key
is made unique before it is sent; malformed ones go as generated and must get 400.
tests/http/idempotency.rs checks what a repeated key does.
"""

import re
import uuid

import schemathesis

WELL_FORMED = re.compile(r'"(?:[ !#-\[\]-~]|\\["\\]){1,255}"')


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name, value in list(headers.items()):
        if name.lower() == "idempotency-key" and isinstance(value, str):
            if WELL_FORMED.fullmatch(value):
                headers[name] = f'"{uuid.uuid4()}"'
