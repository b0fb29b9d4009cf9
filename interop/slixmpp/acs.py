#!/usr/bin/python3
"""An ACS as an XMPP client on Debian's slixmpp: logs in (STARTTLS, any
certificate), sends one TR-069 Annex K connectionRequest IQ to a CPE's
full JID, prints the outcome and exits.

    acs.py --jid acs@example.net/acs --password P --server 127.0.0.1:5222 \
           --to cpe-1@example.net/cwmp --cr-username U --cr-password CP

Prints `RESULT result`, `RESULT error <condition>` (the condition element
as sent, misspelt ones included) or `RESULT timeout`, and exits 0; prints
`FAILED <why>` and exits 1 when it cannot log in.
"""

import argparse
import asyncio
import ssl
import sys

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET

NS = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def condition(iq):
    """The first child of <error> in the stanzas namespace, whatever its name."""
    err = iq.xml.find("{jabber:client}error")
    if err is not None:
        for child in err:
            if child.tag.startswith("{%s}" % STANZAS) and not child.tag.endswith("}text"):
                return child.tag.split("}", 1)[1]
    return "undefined-condition"


class ACS(ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.outcome = asyncio.get_event_loop().create_future()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.add_event_handler("session_start", self.session_start)
        self.add_event_handler("failed_all_auth", lambda _: self.finish("FAILED authentication failed", 1))
        self.add_event_handler("connection_failed", lambda e: self.finish("FAILED connection: %s" % e, 1))

    def finish(self, line, code):
        if not self.outcome.done():
            self.outcome.set_result((line, code))

    async def session_start(self, _):
        iq = self.make_iq_get(ito=self.args.to)
        cr = ET.SubElement(iq.xml, "{%s}connectionRequest" % NS)
        ET.SubElement(cr, "{%s}username" % NS).text = self.args.cr_username
        ET.SubElement(cr, "{%s}password" % NS).text = self.args.cr_password
        try:
            await iq.send(timeout=self.args.timeout)
            self.finish("RESULT result", 0)
        except IqError as e:
            self.finish("RESULT error %s" % condition(e.iq), 0)
        except IqTimeout:
            self.finish("RESULT timeout", 0)


async def run(args):
    host, _, port = args.server.rpartition(":")
    acs = ACS(args)
    acs.connect((host.strip("[]"), int(port)), force_starttls=True)
    try:
        line, code = await asyncio.wait_for(acs.outcome, args.timeout + 10)
    except asyncio.TimeoutError:
        line, code = "FAILED no session", 1
    print(line, flush=True)
    await acs.disconnect(wait=1)
    # Let slixmpp's own tasks end quietly.
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in rest:
        t.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    return code


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True, help="the ACS account, username@domain[/resource]")
    p.add_argument("--password", required=True)
    p.add_argument("--server", required=True, help="host:port of the XMPP server")
    p.add_argument("--to", required=True, help="the CPE's full JID (ConnReqJabberID)")
    p.add_argument("--cr-username", required=True)
    p.add_argument("--cr-password", required=True)
    p.add_argument("--timeout", type=float, default=5, help="seconds to wait for the answer")
    args = p.parse_args()
    return asyncio.get_event_loop().run_until_complete(run(args))


if __name__ == "__main__":
    sys.exit(main())
