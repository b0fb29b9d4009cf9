package stun

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecode: Decode never panics, and what it accepts re-encodes to a
// message that decodes the same (byte for byte when the input's padding
// was zero), checks integrity without panicking, and can be answered.
// The committed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, seed := range [][]byte{tr111Plain, tr111MI, rfc5769Request, rfc5769IPv4Response, rfc5769IPv6Response} {
		f.Add(seed)
	}
	key := []byte("STUNPassword")
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if err := m.Decode(data); err != nil {
			return
		}
		if &m.Raw[0] != &data[0] || len(m.Raw) != len(data) {
			t.Fatal("Raw does not alias the packet")
		}
		if _, err := m.CheckIntegrity(key); (err == ErrNoIntegrity) == m.HasIntegrity() {
			t.Fatalf("CheckIntegrity = %v with HasIntegrity %v", err, m.HasIntegrity())
		}

		// Re-encode attribute by attribute, FINGERPRINT recomputed.
		b := StartMessage(nil, m.Type, &m.TransactionID)
		for _, a := range m.Attributes() {
			if a.Type == AttrFingerprint {
				b = AppendFingerprint(b)
			} else {
				b = AppendAttr(b, a.Type, a.Value)
			}
		}
		var m2 Message
		if err := m2.Decode(b); err != nil {
			t.Fatalf("re-encoded message does not decode: %v\nin  % x\nout % x", err, data, b)
		}
		if s1, s2 := summary(&m), summary(&m2); s1 != s2 {
			t.Fatalf("re-encoded message decodes differently:\n%s\n%s", s1, s2)
		}
		if zeroPadding(&m) && !bytes.Equal(b, data) {
			t.Fatalf("re-encoding changed the bytes:\nin  % x\nout % x", data, b)
		}

		// Answering never fails to produce a decodable response.
		if m.Type.Class() != ClassRequest {
			return
		}
		var resp Message
		out := AppendSuccess(nil, &m, &Success{Mapped: cpeMapped, Source: relaySource,
			Changed: netip.MustParseAddrPort("[2001:db8::2]:3479"), Software: "crrelay", Form: IntegrityRFC3489, Key: key})
		if err := resp.Decode(out); err != nil {
			t.Fatalf("success response does not decode: %v", err)
		}
		if resp.TransactionID != m.TransactionID || resp.Classic != m.Classic || resp.MappedAddress != cpeMapped {
			t.Fatalf("success response: %s", summary(&resp))
		}
		if f, err := resp.CheckIntegrity(key); err != nil || !sameForm(f, IntegrityRFC3489, resp.IntegrityOffset) {
			t.Fatalf("success response integrity: %v, %v", f, err)
		}
		out = AppendError(nil, &m, &Error{Code: 420, Unknown: m.Unknown.Slice()})
		if err := resp.Decode(out); err != nil {
			t.Fatalf("error response does not decode: %v", err)
		}
		if resp.ErrorCode != 420 || resp.Attributes()[0].Type != AttrErrorCode ||
			fmt.Sprint(resp.UnknownAttributes.Slice()) != fmt.Sprint(m.Unknown.Slice()) {
			t.Fatalf("error response: %s", summary(&resp))
		}
	})
}

// summary prints everything Decode found, FINGERPRINT values aside.
func summary(m *Message) string {
	var s strings.Builder
	fmt.Fprintf(&s, "type=%v classic=%v id=%x len=%d\n", m.Type, m.Classic, m.TransactionID, len(m.Raw))
	fmt.Fprintf(&s, "addrs=%v %v %v %v %v %v %v\n", m.MappedAddress, m.XORMappedAddress, m.ResponseAddress,
		m.SourceAddress, m.ChangedAddress, m.ResponseOrigin, m.OtherAddress)
	fmt.Fprintf(&s, "change=%v/%v/%v user=%q/%q/%v error=%d %q unknownattrs=%v/%v software=%q\n",
		m.HasChangeRequest, m.ChangeIP, m.ChangePort, m.Username, m.RawUsername, m.HasUsername(),
		m.ErrorCode, m.ErrorReason, m.UnknownAttributes.Slice(), m.UnknownAttributes.Truncated(), m.Software)
	fmt.Fprintf(&s, "mi=%d fp=%v crb=%v/%v/%q bc=%v unknown=%v/%v\n", m.IntegrityOffset, m.Fingerprint,
		m.ConnectionRequestBinding, m.ConnectionRequestBindingValid, m.ConnectionRequestBindingRaw,
		m.BindingChange, m.Unknown.Slice(), m.Unknown.Truncated())
	for _, a := range m.Attributes() {
		v := a.Value
		if a.Type == AttrFingerprint {
			v = nil
		}
		fmt.Fprintf(&s, "  %v@%d %x\n", a.Type, a.Offset, v)
	}
	return s.String()
}

// zeroPadding reports whether every padding byte of m is zero, as the
// encoder writes them.
func zeroPadding(m *Message) bool {
	for _, a := range m.Attributes() {
		end := a.Offset + attrHeaderSize + len(a.Value)
		for _, c := range m.Raw[end : end+(4-len(a.Value)%4)%4] {
			if c != 0 {
				return false
			}
		}
	}
	return true
}

// FuzzParseUDPConnectionRequest: the CPE-side parser never panics, and
// what it accepts rebuilds into a datagram that parses the same.
func FuzzParseUDPConnectionRequest(f *testing.F) {
	f.Add([]byte(vecDatagram))
	f.Add([]byte("GET HTTP://[2001:db8::7]:7547/?x=1&ts=1&id=2&un=a+b%26c&cn=%2F&sig=" + vecSig + " HTTP/1.0\nHost: x\n"))
	f.Add([]byte("GET http://h:1?ts=1&id=2&un=u&cn=c&sig=" + vecSig + " HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseUDPConnectionRequest(data)
		if err != nil {
			return
		}
		_ = r.Verify([]byte("p"))
		b := AppendUDPConnectionRequest(nil, &r, []byte("p"))
		r2, err := ParseUDPConnectionRequest(b)
		if err != nil {
			t.Fatalf("rebuilt datagram %q: %v", b, err)
		}
		if r2.Authority != r.Authority || r2.Timestamp != r.Timestamp || r2.ID != r.ID ||
			r2.Username != r.Username || r2.CNonce != r.CNonce {
			t.Fatalf("rebuilt datagram parses as %+v, want %+v", r2, r)
		}
		if err := r2.Verify([]byte("p")); err != nil {
			t.Fatalf("rebuilt datagram %q: Verify: %v", b, err)
		}
	})
}

// TestFuzzCorpus keeps the committed corpus honest: the "broken-" seeds
// are rejected, the others decode, and the integrity-protected classic
// request checks with its key.
func TestFuzzCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzDecode/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			data := readCorpusFile(t, file)
			var m Message
			err := m.Decode(data)
			if broken := strings.HasPrefix(name, "broken-"); broken != (err != nil) {
				t.Fatalf("Decode = %v", err)
			}
			if name == "classic-tr111-request-integrity" {
				if f, err := m.CheckIntegrity(tr111MIKey); err != nil || f != IntegrityRFC3489 {
					t.Errorf("CheckIntegrity = %v, %v", f, err)
				}
			}
		})
	}
}

// readCorpusFile reads a one-value "go test fuzz v1" file of []byte.
func readCorpusFile(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	header, value, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if header != "go test fuzz v1" || !strings.HasPrefix(value, "[]byte(") || !strings.HasSuffix(value, ")") {
		t.Fatalf("%s: not a go test fuzz v1 []byte file", file)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(value, "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return []byte(s)
}
