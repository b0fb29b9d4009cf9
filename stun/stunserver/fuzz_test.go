//go:build linux

package stunserver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/crrelay/crrelay/stun"
)

// FuzzHandle feeds arbitrary packets to the handler: it must not panic,
// and whatever it answers must be a STUN response that echoes the
// request's transaction id, goes to the source's IP, and respects the
// amplification bounds. The corpus is in testdata/fuzz/FuzzHandle.
func FuzzHandle(f *testing.F) {
	for _, seed := range [][]byte{
		packet(rowClassicHdr),
		tr111,
		signed(tr111MI, testPassword),
		packet(rowCookieHdr),
		packet(rowClassicHdr, "0003 0004 00000006"),
		packet(rowClassicHdr, "7777 0004 00000000"),
		[]byte("GET http://192.0.2.1:7547?ts=1 HTTP/1.1\r\n\r\n"),
	} {
		f.Add(seed)
	}
	s, err := New(Config{Registry: newFakeRegistry(), RatePerSource: -1})
	if err != nil {
		f.Fatal(err)
	}
	src := netip.MustParseAddrPort("203.0.113.7:51234")
	local := netip.MustParseAddrPort("192.0.2.1:3478")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		w := newWorker(s, nil)
		r := w.handle(pkt, src, local, time.Now(), make([]byte, 0, writeBufLenForTests))
		if r.msg == nil {
			return
		}
		checkBounds(t, pkt, r.msg)
		if r.to.Addr() != src.Addr() || r.from != local || r.via != nil {
			t.Fatalf("answer to %v from %v", r.to, r.from)
		}
		var m stun.Message
		if err := m.Decode(r.msg); err != nil {
			t.Fatalf("answer % x does not decode: %v", r.msg, err)
		}
		if c := m.Type.Class(); (c != stun.ClassSuccess && c != stun.ClassError) || string(r.msg[4:20]) != string(pkt[4:20]) {
			t.Fatalf("answer % x to % x", r.msg, pkt)
		}
	})
}
