package registry

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
)

// FuzzDecodeDevice feeds stored bytes, which a damaged disk or another
// engine may mangle, to the decoder: it must never panic, and whatever it
// accepts must survive an encode/decode round trip unchanged.
func FuzzDecodeDevice(f *testing.F) {
	s, err := newSealer(testKey)
	if err != nil {
		f.Fatal(err)
	}
	for i, d := range []Device{testDevice(1), {ID: "x"}, {ID: "y", Password: "p", Transports: []Transport{TransportHTTP}}} {
		f.Add(d.ID, encodeDevice(nil, s, newRecord(&d)))
		if i == 0 {
			f.Add(d.ID, []byte{recordVersion, 2, 2, 1, 0b111001})
		}
	}
	f.Fuzz(func(t *testing.T, id string, val []byte) {
		dc := decoder{s: s}
		r, err := dc.device([]byte(id), val)
		if err != nil {
			return
		}
		again, err := dc.device([]byte(id), encodeDevice(nil, s, r))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again.data != r.data || again.end != r.end || again.transports != r.transports ||
			again.allowBasic != r.allowBasic || again.created != r.created || again.updated != r.updated {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, again)
		}
	})
}

// FuzzLookups checks that whatever JID and UDP address validation accepts
// is found again by the lookups, in the spellings they promise to fold.
func FuzzLookups(f *testing.F) {
	f.Add("cpe@example.net/cr", "192.0.2.1:7547")
	f.Add("CPE@Example.NET", "[2001:db8::1]:1")
	f.Add("a@b/c@d/e", "[::ffff:10.0.0.1]:65535")
	r, err := New(newMemStore(), Options{Key: testKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	f.Fuzz(func(t *testing.T, jid, udp string) {
		d := Device{ID: "fuzz", XMPPJID: jid, UDPAddress: udp}
		if validate(&d) != nil {
			return
		}
		if _, _, err := r.Put(context.Background(), d); err != nil {
			t.Fatalf("Put of a valid device: %v", err)
		}
		bare, _, _ := strings.Cut(jid, "/")
		for _, q := range []string{jid, bare, bare + "/other", strings.ToLower(bare)} {
			if got, ok := r.ByJID(q); !ok || got.ID != d.ID {
				t.Errorf("ByJID(%q) after Put(%q) not found", q, jid)
			}
		}
		ap := netip.MustParseAddrPort(udp)
		for _, q := range []string{udp, ap.String(), netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()} {
			if got, ok := r.ByUDPAddress(q); !ok || got.ID != d.ID {
				t.Errorf("ByUDPAddress(%q) after Put(%q) not found", q, udp)
			}
		}
		if err := r.Delete(context.Background(), d.ID); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeLiveRecord feeds stored live records, wakes and UDP binding, to
// the decoder: it must never panic, and whatever it accepts must survive
// an encode/decode round trip unchanged.
func FuzzDecodeLiveRecord(f *testing.F) {
	f.Add([]byte(`{"wakes":[{"at":"2025-01-01T00:00:00Z","status":"sent","duration_ms":3}]}`))
	f.Add([]byte(`{"udp_binding":{"mapped":"[::ffff:203.0.113.7]:51234","local":"198.51.100.1:3478","prev_mapped":"203.0.113.7:1","first_seen":"2025-01-01T00:00:00Z","last_seen":"2025-01-01T00:01:00+02:00","keepalive_ns":20000000000,"changes":2,"last_change":"2025-01-01T00:00:30Z","nat_timeout_ns":65000000000,"survived_gap_ns":1}}`))
	f.Add([]byte(`{"wakes":[{"status":"sent"}],"udp_binding":{"mapped":"","local":"198.51.100.1:3478"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, v []byte) {
		l, b, err := decodeLiveRecord(v)
		if err != nil {
			return
		}
		enc, err := encodeLiveRecord(l, b)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		l2, b2, err := decodeLiveRecord(enc)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%s", err, enc)
		}
		if (b == nil) != (b2 == nil) || (b != nil && *b != *b2) {
			t.Fatalf("binding changed in a round trip:\n%+v\n%+v", b, b2)
		}
		if enc2, _ := encodeLiveRecord(l2, b2); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the record:\n%s\n%s", enc, enc2)
		}
	})
}
