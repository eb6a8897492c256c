-- Each refresh-token family is bound to the security stamp its user had when the family
-- started. A refresh goes through only while the user still has that stamp, checked in
-- the transaction that uses the token: a login or refresh in flight across a password
-- change (or `revoke-sessions`) cannot leave a family that outlives it. Existing families
-- take their user's current stamp, so the upgrade logs nobody out. The default stays for
-- instances of the previous release during a rolling upgrade: their new families get ''
-- and cannot refresh (their users log in again), rather than failing to log in.
ALTER TABLE myapi.refresh_families ADD COLUMN security_stamp TEXT NOT NULL DEFAULT '';
UPDATE myapi.refresh_families AS f SET security_stamp = u.security_stamp
FROM myapi.users AS u WHERE u.user_id = f.user_id;

-- What a rotation handed out, so that the same request sent twice (a double submit within
-- the reuse grace) gets the same answer: the successor's hash, and the successor itself
-- encrypted under a key derived from the used token (which is never stored).
ALTER TABLE myapi.refresh_tokens ADD COLUMN successor_hash TEXT;
ALTER TABLE myapi.refresh_tokens ADD COLUMN successor_sealed TEXT;
