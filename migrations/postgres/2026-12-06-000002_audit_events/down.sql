DROP TABLE IF EXISTS myapi.audit_events;
