#!/usr/bin/python3
"""A TR-069 Annex K CPE agent on Debian's slixmpp: logs in (STARTTLS, any
certificate), binds the resource of its JID, sends presence and answers
connectionRequest IQs (urn:broadband-forum-org:cwmp:xmppConnReq-1-0).

    cpe.py --jid cpe-1@example.net/cwmp --password P --server 127.0.0.1:5222 \
           --cr-username U --cr-password CP [--allow acs@example.net] ...

Prints `READY <full JID>` once bound and `WAKE from=<jid>` for each
accepted connection request; `REFUSED from=<jid> <condition>` otherwise.
Runs until killed (SIGTERM or SIGINT).

Per TR-069 Annex K and TR-181 ConnReqAllowedJabberIDs: a full JID in the
allowed list matches exactly, a bare JID matches any of its resources, an
empty list allows anyone. A sender not allowed gets service-unavailable;
wrong credentials get not-authorized.
"""

import argparse
import asyncio
import signal
import ssl
import sys

from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"


def say(*words):
    print(*words, flush=True)


class CPE(ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.allowed = [JID(j) for j in args.allow]
        # Set to the exit code when the agent should stop.
        self.done = asyncio.get_event_loop().create_future()
        # A CPE's certificate check is often lax; so is this one.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.add_event_handler("session_start", self.session_start)
        # failed_auth fires per mechanism tried; this once all failed.
        self.add_event_handler("failed_all_auth", lambda _: self.fail("authentication failed"))
        self.register_handler(Callback(
            "connectionRequest",
            MatchXPath("{jabber:client}iq/{%s}connectionRequest" % NS),
            self.connection_request))

    def fail(self, why):
        say("FAILED", why)
        self.stop(1)

    def stop(self, code):
        if not self.done.done():
            self.done.set_result(code)

    def session_start(self, _):
        self.send_presence()
        say("READY", self.boundjid.full)

    def allowed_sender(self, sender):
        if not self.allowed:
            return True
        for a in self.allowed:
            if a.resource:
                if a.full == sender.full:
                    return True
            elif a.bare == sender.bare:
                return True
        return False

    def connection_request(self, iq):
        if iq["type"] != "get":
            return
        sender = iq["from"]
        cr = iq.xml.find("{%s}connectionRequest" % NS)
        user = cr.findtext("{%s}username" % NS) or ""
        password = cr.findtext("{%s}password" % NS) or ""
        if not self.allowed_sender(sender):
            self.refuse(iq, "service-unavailable", "cancel")
        elif user != self.args.cr_username or password != self.args.cr_password:
            self.refuse(iq, "not-authorized", "auth")
        else:
            iq.reply(clear=True).send()
            say("WAKE from=%s" % sender)

    def refuse(self, iq, condition, etype):
        reply = iq.reply(clear=True)
        reply["type"] = "error"
        reply["error"]["type"] = etype
        reply["error"]["condition"] = condition
        reply.send()
        say("REFUSED from=%s %s" % (iq["from"], condition))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True, help="username@domain/resource")
    p.add_argument("--password", required=True)
    p.add_argument("--server", required=True, help="host:port of the XMPP server")
    p.add_argument("--cr-username", required=True)
    p.add_argument("--cr-password", required=True)
    p.add_argument("--allow", action="append", default=[],
                   help="a ConnReqAllowedJabberIDs entry (repeatable; none = anyone)")
    args = p.parse_args()
    host, _, port = args.server.rpartition(":")

    loop = asyncio.get_event_loop()
    return loop.run_until_complete(run(args, host, port))


async def run(args, host, port):
    cpe = CPE(args)
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: cpe.stop(0))
    # STARTTLS is required by the server; the CPE follows it.
    cpe.connect((host.strip("[]"), int(port)), force_starttls=True)
    code = await cpe.done
    await cpe.disconnect(wait=1)
    # Let slixmpp's own tasks end quietly: exiting with them pending can
    # crash the interpreter at shutdown.
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in rest:
        t.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
