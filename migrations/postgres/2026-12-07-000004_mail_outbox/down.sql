DROP TABLE myapi.mail_outbox;
