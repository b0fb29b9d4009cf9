package stun

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

var (
	cpeMapped   = netip.MustParseAddrPort("203.0.113.7:51410")
	relaySource = netip.MustParseAddrPort("198.51.100.1:3478")
	relayAlt    = netip.MustParseAddrPort("198.51.100.2:3479")
)

func TestEncodeGolden(t *testing.T) {
	var req Message
	if err := req.Decode(tr111Plain); err != nil {
		t.Fatal(err)
	}
	var req5389 Message
	if err := req5389.Decode(rfc5769Request); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{
			name: "TR-111 first request",
			got:  AppendBindingRequest(nil, &BindingRequest{ID: classicID, Username: "CPE57689", ConnectionRequestBinding: true}),
			want: tr111Plain,
		},
		{
			name: "TR-111 request with padded username and RFC 3489 integrity",
			got: AppendBindingRequest(nil, &BindingRequest{ID: classicID, Username: "cpe-0001x", ConnectionRequestBinding: true,
				Form: IntegrityRFC3489, Key: tr111MIKey}),
			want: tr111MI,
		},
		{
			name: "success to a classic request",
			got: AppendSuccess(nil, &req, &Success{Mapped: cpeMapped, Source: relaySource, Changed: relayAlt,
				Software: "crrelay"}),
			want: wire(
				"01 01 00 30",
				"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7", // the request's 16 bytes
				"00 01 00 08 00 01 c8 d2 cb 00 71 07",             // MAPPED-ADDRESS 203.0.113.7:51410
				"00 04 00 08 00 01 0d 96 c6 33 64 01",             // SOURCE-ADDRESS 198.51.100.1:3478
				"00 05 00 08 00 01 0d 97 c6 33 64 02",             // CHANGED-ADDRESS 198.51.100.2:3479
				`80 22 00 08 "crrelay" 20`,                        // SOFTWARE, space-padded
			),
		},
		{
			name: "401 to a classic request",
			got:  AppendError(nil, &req, &Error{Code: 401}),
			want: wire(
				"01 11 00 14",
				"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
				`00 09 00 10 00 00 04 01 "Unauthorized"`, // ERROR-CODE 401, first
			),
		},
		{
			name: "420 to a classic request, odd list",
			got:  AppendError(nil, &req, &Error{Code: 420, Unknown: []AttrType{0x0024, 0x0025, 0x7fff}}),
			want: wire(
				"01 11 00 28",
				"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
				`00 09 00 18 00 00 04 14 "Unknown" 20 "Attribute" 20 20 20`,
				"00 0a 00 08 00 24 00 25 7f ff 7f ff", // last type repeated (RFC 3489 11.2.10)
			),
		},
		{
			name: "success to an RFC 5389 request",
			got:  AppendSuccess(nil, &req5389, &Success{Mapped: netip.MustParseAddrPort("192.0.2.1:32853")}),
			want: AppendFingerprint(wire( // FINGERPRINT computed: pion checks it in pion_test.go
				"01 01 00 18",
				"21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae",
				"00 20 00 08 00 01 a1 47 e1 12 a6 43", // XOR-MAPPED-ADDRESS, as in RFC 5769 2.2
				"00 01 00 08 00 01 80 55 c0 00 02 01", // MAPPED-ADDRESS 192.0.2.1:32853
			)),
		},
		{
			name: "IPv4-mapped IPv6 is written as IPv4",
			got:  AppendAddress(StartMessage(nil, TypeBindingSuccess, &classicID), AttrMappedAddress, netip.MustParseAddrPort("[::ffff:203.0.113.7]:51410")),
			want: wire("01 01 00 0c", "7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7", "00 01 00 08 00 01 c8 d2 cb 00 71 07"),
		},
		{
			name: "invalid address appends nothing",
			got:  AppendAddress(StartMessage(nil, TypeBindingSuccess, &classicID), AttrMappedAddress, netip.AddrPort{}),
			want: wire("01 01 00 00", "7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7"),
		},
		{
			name: "BINDING-CHANGE, CHANGE-REQUEST, RESPONSE-ADDRESS",
			got: AppendBindingRequest(nil, &BindingRequest{ID: classicID, BindingChange: true, ChangePort: true,
				ResponseAddress: cpeMapped}),
			want: wire(
				"00 01 00 18",
				"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
				"c0 02 00 00",
				"00 02 00 08 00 01 c8 d2 cb 00 71 07",
				"00 03 00 04 00 00 00 02",
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) {
				t.Errorf("got\n% x\nwant\n% x", tt.got, tt.want)
			}
		})
	}
}

// TestStartMessageReusesBuffer: encoding discards the buffer's contents
// and reuses its storage.
func TestStartMessageReusesBuffer(t *testing.T) {
	buf := make([]byte, 7, MaxMessageSize)
	var req Message
	if err := req.Decode(tr111Plain); err != nil {
		t.Fatal(err)
	}
	out := AppendSuccess(buf, &req, &Success{Mapped: cpeMapped})
	if &out[0] != &buf[:1][0] {
		t.Error("AppendSuccess did not reuse the buffer")
	}
	if out[0] != 0x01 || out[1] != 0x01 {
		t.Errorf("header % x", out[:4])
	}
}

// TestRoundTrip: request -> Decode -> CheckIntegrity -> response ->
// Decode, for both kinds of client, both address families and every
// integrity form.
func TestRoundTrip(t *testing.T) {
	key := []byte("STUNPassword")
	mapped := map[string]netip.AddrPort{
		"IPv4": cpeMapped,
		"IPv6": netip.MustParseAddrPort("[2001:db8:cafe::17]:40000"),
	}
	for _, classic := range []bool{true, false} {
		for fam, addr := range mapped {
			for _, form := range []IntegrityForm{IntegrityNone, IntegrityRFC3489, IntegrityRFC5389, IntegrityZeroLength} {
				name := fmt.Sprintf("classic=%v/%s/%v", classic, fam, form)
				t.Run(name, func(t *testing.T) {
					r := BindingRequest{
						ID: NewTransactionID(classic), Username: "cpe-42", ConnectionRequestBinding: true,
						BindingChange: true, Form: form, Key: key, Fingerprint: !classic,
					}
					var req Message
					if err := req.Decode(AppendBindingRequest(nil, &r)); err != nil {
						t.Fatalf("request: %v", err)
					}
					if req.Classic != classic || req.TransactionID != r.ID || string(req.Username) != "cpe-42" ||
						!req.ConnectionRequestBindingValid || !req.BindingChange || req.Fingerprint == classic {
						t.Fatalf("request decoded as %+v", req)
					}
					got, err := req.CheckIntegrity(key)
					if form == IntegrityNone {
						if err != ErrNoIntegrity {
							t.Fatalf("CheckIntegrity = %v, want ErrNoIntegrity", err)
						}
					} else if err != nil || !sameForm(got, form, req.IntegrityOffset) {
						t.Fatalf("CheckIntegrity = %v, %v; want %v", got, err, form)
					}

					var resp Message
					if err := resp.Decode(AppendSuccess(nil, &req, &Success{
						Mapped: addr, Source: relaySource, Changed: relayAlt, Software: "crrelay", Form: got, Key: key,
					})); err != nil {
						t.Fatalf("response: %v", err)
					}
					if resp.Type != TypeBindingSuccess || resp.TransactionID != r.ID || resp.Classic != classic {
						t.Errorf("response header %v %x classic %v", resp.Type, resp.TransactionID, resp.Classic)
					}
					if resp.MappedAddress != addr || string(resp.Software) != "crrelay " { // space-padded
						t.Errorf("MAPPED-ADDRESS %v software %q", resp.MappedAddress, resp.Software)
					}
					if classic {
						if resp.SourceAddress != relaySource || resp.ChangedAddress != relayAlt ||
							resp.XORMappedAddress.IsValid() || resp.Fingerprint {
							t.Errorf("classic response: %+v", resp)
						}
					} else {
						if resp.XORMappedAddress != addr || resp.ResponseOrigin != relaySource ||
							resp.OtherAddress != relayAlt || resp.SourceAddress.IsValid() || !resp.Fingerprint {
							t.Errorf("RFC 5389 response: %+v", resp)
						}
					}
					rf, err := resp.CheckIntegrity(key)
					if form == IntegrityNone {
						if resp.HasIntegrity() {
							t.Error("response has MESSAGE-INTEGRITY, request had none")
						}
					} else if err != nil || !sameForm(rf, form, resp.IntegrityOffset) {
						t.Errorf("response CheckIntegrity = %v, %v; want %v", rf, err, form)
					}
				})
			}
		}
	}
}

// sameForm: at an offset that is a multiple of 64 the RFC 3489 and RFC
// 5389 forms are the same bytes, and either may be reported.
func sameForm(got, want IntegrityForm, off int) bool {
	if got == want {
		return true
	}
	pair := func(f IntegrityForm) bool { return f == IntegrityRFC3489 || f == IntegrityRFC5389 }
	return off%64 == 0 && pair(got) && pair(want)
}

// TestRoundTripErrors: the error answers a TR-111 server gives, to both
// kinds of client.
func TestRoundTripErrors(t *testing.T) {
	for _, classic := range []bool{true, false} {
		b := AppendBindingRequest(nil, &BindingRequest{ID: NewTransactionID(classic), Username: "cpe-42"})
		b = AppendAttr(b, 0x0024, []byte{1, 2, 3, 4}) // PRIORITY: unknown here
		b = AppendAttr(b, 0x0031, nil)
		var req Message
		if err := req.Decode(b); err != nil {
			t.Fatal(err)
		}
		for _, e := range []Error{
			{Code: 400},
			{Code: 401},
			{Code: 420, Unknown: req.Unknown.Slice()},
			{Code: 431, Software: "crrelay"},
			{Code: 432, Reason: "MESSAGE-INTEGRITY without USERNAME"},
			{Code: 438, Form: IntegrityRFC3489, Key: []byte("k")},
			{Code: 600},
		} {
			t.Run(fmt.Sprintf("classic=%v/%d", classic, e.Code), func(t *testing.T) {
				var resp Message
				if err := resp.Decode(AppendError(nil, &req, &e)); err != nil {
					t.Fatal(err)
				}
				if resp.Type != TypeBindingError || resp.TransactionID != req.TransactionID || resp.ErrorCode != e.Code {
					t.Errorf("type %v id %x code %d", resp.Type, resp.TransactionID, resp.ErrorCode)
				}
				if first := resp.Attributes()[0]; first.Type != AttrErrorCode || first.Offset != HeaderSize {
					t.Errorf("first attribute %v at %d, want ERROR-CODE at %d", first.Type, first.Offset, HeaderSize)
				}
				reason := e.Reason
				if reason == "" {
					reason = ReasonPhrase(e.Code)
				}
				if got := string(bytes.TrimRight(resp.ErrorReason, " ")); got != reason {
					t.Errorf("reason %q, want %q", got, reason)
				}
				if len(resp.ErrorReason)%4 != 0 {
					t.Errorf("reason %q not padded to a multiple of 4", resp.ErrorReason)
				}
				if !slices.Equal(resp.UnknownAttributes.Slice(), e.Unknown) {
					t.Errorf("UNKNOWN-ATTRIBUTES %v, want %v", resp.UnknownAttributes.Slice(), e.Unknown)
				}
				if resp.Fingerprint == classic {
					t.Errorf("FINGERPRINT %v for classic %v", resp.Fingerprint, classic)
				}
				if f, err := resp.CheckIntegrity(e.Key); f != e.Form || (e.Form != IntegrityNone && err != nil) {
					t.Errorf("CheckIntegrity = %v, %v; want %v", f, err, e.Form)
				}
			})
		}
	}
}

// TestEncodedLengthsAreMultiplesOf4: every value this package writes is
// a multiple of 4 bytes (padding included in the length), so that CPE
// parsers that step over attributes by their length stay aligned. The
// exceptions are the fixed-size ones, all multiples of 4 anyway.
func TestEncodedLengthsAreMultiplesOf4(t *testing.T) {
	var req Message
	if err := req.Decode(tr111Plain); err != nil {
		t.Fatal(err)
	}
	msgs := [][]byte{
		AppendSuccess(nil, &req, &Success{Mapped: cpeMapped, Source: relaySource, Software: "crrelay/1.0.3"}),
		AppendError(nil, &req, &Error{Code: 420, Unknown: []AttrType{1}, Reason: "odd", Software: "x"}),
		AppendBindingRequest(nil, &BindingRequest{ID: classicID, Username: "abcde", ConnectionRequestBinding: true, Form: IntegrityRFC3489}),
	}
	for _, b := range msgs {
		var m Message
		if err := m.Decode(b); err != nil {
			t.Fatal(err)
		}
		for _, a := range m.Attributes() {
			if len(a.Value)%4 != 0 {
				t.Errorf("%v value is %d bytes", a.Type, len(a.Value))
			}
		}
	}
}

func TestNewTransactionID(t *testing.T) {
	a, b := NewTransactionID(true), NewTransactionID(true)
	if a == b || a.HasCookie() {
		t.Errorf("classic ids %x %x", a, b)
	}
	c := NewTransactionID(false)
	if !c.HasCookie() || c == NewTransactionID(false) {
		t.Errorf("RFC 5389 id %x", c)
	}
}
