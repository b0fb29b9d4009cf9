package sim

import "testing"

// benchStanzas are what the XMPP load bench's CPEs and ACS parse, each
// with the scope the stream header gives it.
var benchStanzas = []struct {
	name, raw string
	scope     *nsScope
}{
	// What every simulated CPE parses per connection request.
	{"connection-request",
		`<iq type="get" id="p1k.2f" to="bench-00001@example.net/cwmp" from="acs@example.net/bench-0">` +
			`<connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0">` +
			`<username>cr-user-1</username><password>cr-pass-1</password></connectionRequest></iq>`,
		&nsScope{space: nsClient}},
	// What the ACS parses per answer.
	{"result", `<iq type='result' id='x' from='a@b/c' to='d@e/f'/>`, &nsScope{space: nsClient}},
	{"stream-error", prosodyConflict[:len(prosodyConflict)-len("</stream:stream>")],
		&nsScope{prefix: "stream", space: nsStream, parent: &nsScope{space: nsClient}}},
	{"roster",
		`<iq type='result' id='roster_1' to='bench-00001@example.net/cwmp'><query xmlns='jabber:iq:roster' ver='ver7'>` +
			`<item jid='acs@example.net' name='ACS' subscription='both'><group>Servers</group></item>` +
			`<item jid='bench-00002@example.net' subscription='none' ask='subscribe'/>` +
			`<item jid='x@example.net' name='O&apos;Neil &amp; co' subscription='to'><group>Friends</group><group>Work</group></item>` +
			`</query></iq>`,
		&nsScope{space: nsClient}},
}

func BenchmarkParseElement(b *testing.B) {
	for _, s := range benchStanzas {
		b.Run(s.name, func(b *testing.B) {
			raw := []byte(s.raw)
			if _, err := parseElement(raw, s.scope); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				parseElement(raw, s.scope)
			}
		})
	}
}

// BenchmarkOldParseElement measures the reference parser FuzzParseElement
// compares with, for the same stanzas on the same machine.
func BenchmarkOldParseElement(b *testing.B) {
	for _, s := range benchStanzas {
		b.Run(s.name, func(b *testing.B) {
			raw := []byte(s.raw)
			if _, err := oldParseElement(raw, s.scope); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				oldParseElement(raw, s.scope)
			}
		})
	}
}
