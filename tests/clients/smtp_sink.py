"""A real SMTP server for the tests (aiosmtpd), on 127.0.0.1:PORT. Each message it accepts
is appended to OUT as one JSON line: message_id, from, to (the envelope's recipients),
subject and the decoded text body. `--refuse N` answers the first N messages 451 (try
again later); `--hang` never answers a message, as a stuck server would. Prints `ready`
once it listens, and runs until its standard input closes (the test ends).
Usage: smtp_sink.py PORT OUT [--refuse N] [--hang]"""

import argparse
import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, refuse, hang):
        self.out, self.refuse, self.hang = out, refuse, hang

    async def handle_DATA(self, server, session, envelope):
        if self.hang:
            await asyncio.sleep(3600)
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {
            "message_id": message["Message-ID"],
            "from": message["From"],
            "to": envelope.rcpt_tos,
            "subject": message["Subject"],
            "body": message.get_content(),
        }
        with open(self.out, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 2.0.0 OK"


parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("out")
parser.add_argument("--refuse", type=int, default=0)
parser.add_argument("--hang", action="store_true")
args = parser.parse_args()
controller = Controller(Sink(args.out, args.refuse, args.hang), hostname="127.0.0.1",
                        port=args.port)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
