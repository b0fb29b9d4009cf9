package stun

import (
	"bytes"
	"strings"
	"testing"
)

// TestCheckIntegrityForms signs requests by hand in each form deployed
// clients use and checks that CheckIntegrity finds the form.
func TestCheckIntegrityForms(t *testing.T) {
	// A classic TR-111 request, MESSAGE-INTEGRITY at offset 60 (not a
	// multiple of 64, so that the padded and unpadded forms differ).
	classic := func() []byte { return bytes.Clone(tr111MI) }
	// The same attributes with a cookie, plus FINGERPRINT after
	// MESSAGE-INTEGRITY: the header length counts FINGERPRINT too.
	cookie := func() []byte {
		b := StartMessage(nil, TypeBindingRequest, &cookieID)
		b = AppendUsername(b, "cpe-0001x")
		b = AppendConnectionRequestBinding(b)
		b = AppendAttr(b, AttrMessageIntegrity, make([]byte, 20))
		return AppendFingerprint(b)
	}
	refingerprint := func(b []byte) []byte {
		return AppendFingerprint(b[:len(b)-fingerprintAttrSize])
	}
	key := tr111MIKey
	const off = 60
	tests := []struct {
		name string
		pkt  []byte
		key  []byte
		want IntegrityForm
		err  error
	}{
		{"classic, RFC 3489 padded", classic(), key, IntegrityRFC3489, nil},
		{"classic, unpadded (RFC 5389 computation)", sign(classic(), off, plainMAC(key, tr111MI, off, off+24-20)), key, IntegrityRFC5389, nil},
		{"classic, Vovida zero length", sign(classic(), off, plainMAC(key, tr111MI, off, 0)), key, IntegrityZeroLength, nil},
		{"classic, wrong key", classic(), []byte("s3cr3T"), IntegrityNone, ErrIntegrity},
		{"classic, flipped bit", func() []byte { b := classic(); b[off+10] ^= 0x40; return b }(), key, IntegrityNone, ErrIntegrity},
		{"classic, MAC over a different length", sign(classic(), off, plainMAC(key, tr111MI, off, 0x40+8)), key, IntegrityNone, ErrIntegrity},
		{"cookie, RFC 5389 with FINGERPRINT", func() []byte {
			b := cookie()
			return refingerprint(sign(b, off, plainMAC(key, b, off, off+24-20)))
		}(), key, IntegrityRFC5389, nil},
		{"cookie, RFC 3489 padded", func() []byte {
			b := cookie()
			text := bytes.Clone(b[:off])
			text[3] = off + 24 - 20 // length as if MESSAGE-INTEGRITY were last
			return refingerprint(sign(b, off, rfc3489MAC(key, text, off)))
		}(), key, IntegrityRFC3489, nil},
		{"cookie, wrong key", func() []byte {
			b := cookie()
			return refingerprint(sign(b, off, plainMAC(key, b, off, off+24-20)))
		}(), []byte("x"), IntegrityNone, ErrIntegrity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			if err := m.Decode(tt.pkt); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			raw := bytes.Clone(m.Raw)
			form, err := m.CheckIntegrity(tt.key)
			if form != tt.want || err != tt.err {
				t.Errorf("CheckIntegrity = %v, %v; want %v, %v", form, err, tt.want, tt.err)
			}
			if !bytes.Equal(raw, m.Raw) {
				t.Error("CheckIntegrity modified the packet")
			}
		})
	}
}

// TestAppendIntegrityForms: what AppendIntegrity writes in each form is
// what the straightforward computation gives, for keys of every size
// (HMAC hashes keys longer than 64 bytes first) and for a message too
// large for the stack buffer.
func TestAppendIntegrityForms(t *testing.T) {
	keys := map[string][]byte{
		"empty":    {},
		"password": []byte("STUNPassword"),
		"64 bytes": bytes.Repeat([]byte{'k'}, 64),
		"65 bytes": bytes.Repeat([]byte{'k'}, 65),
	}
	sizes := map[string]int{"short": 9, "oversized": scratchSize + 100}
	for kname, key := range keys {
		for sname, size := range sizes {
			for _, form := range []IntegrityForm{IntegrityRFC3489, IntegrityRFC5389, IntegrityZeroLength} {
				t.Run(kname+"/"+sname+"/"+form.String(), func(t *testing.T) {
					b := StartMessage(nil, TypeBindingRequest, &classicID)
					b = AppendAttrString(b, AttrSoftware, strings.Repeat("s", size))
					off := len(b)
					b = AppendIntegrity(b, key, form)
					var want []byte
					switch form {
					case IntegrityRFC3489:
						want = rfc3489MAC(key, b, off)
					case IntegrityRFC5389:
						want = plainMAC(key, b, off, off+24-20)
					case IntegrityZeroLength:
						want = plainMAC(key, b, off, 0)
					}
					if got := b[off+4:]; !bytes.Equal(got, want) {
						t.Errorf("MAC %x, want %x", got, want)
					}
					if size > MaxMessageSize {
						return // Decode refuses it
					}
					var m Message
					if err := m.Decode(b); err != nil {
						t.Fatal(err)
					}
					if got, err := m.CheckIntegrity(key); err != nil || got != form {
						t.Errorf("CheckIntegrity = %v, %v; want %v", got, err, form)
					}
				})
			}
		}
	}
}

// TestIntegrityAt64: when MESSAGE-INTEGRITY starts at a multiple of 64,
// RFC 3489 padding adds nothing and the forms coincide; the message's
// kind decides which one is reported.
func TestIntegrityAt64(t *testing.T) {
	for _, id := range []TransactionID{classicID, cookieID} {
		b := StartMessage(nil, TypeBindingRequest, &id)
		b = AppendUsername(b, "CPE576890123") // 16 bytes
		b = AppendConnectionRequestBinding(b) // 24 bytes
		b = AppendBindingChange(b)            // 4 bytes: MESSAGE-INTEGRITY at 64
		b = AppendIntegrity(b, []byte("pw"), IntegrityRFC3489)
		var m Message
		if err := m.Decode(b); err != nil {
			t.Fatal(err)
		}
		if m.IntegrityOffset%64 != 0 {
			t.Fatalf("IntegrityOffset %d: test needs a multiple of 64", m.IntegrityOffset)
		}
		want := IntegrityRFC3489
		if !m.Classic {
			want = IntegrityRFC5389
		}
		if form, err := m.CheckIntegrity([]byte("pw")); err != nil || form != want {
			t.Errorf("classic %v: CheckIntegrity = %v, %v; want %v", m.Classic, form, err, want)
		}
	}
}

func TestIntegrityFormString(t *testing.T) {
	for f, want := range map[IntegrityForm]string{
		IntegrityNone: "none", IntegrityRFC3489: "rfc3489", IntegrityRFC5389: "rfc5389",
		IntegrityZeroLength: "zero-length", 9: "invalid",
	} {
		if f.String() != want {
			t.Errorf("%d.String() = %q, want %q", f, f.String(), want)
		}
	}
}
