package stun

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"

	"github.com/crrelay/crrelay/stun/internal/wirehex"
)

// wire turns packet diagrams into bytes (see wirehex.Bytes).
func wire(rows ...string) []byte { return wirehex.Bytes(rows...) }

// rfc3489MAC computes RFC 3489 11.2.8 MESSAGE-INTEGRITY the obvious way,
// independently of integrityMAC: pkt[:off] is the message before the
// attribute, whose header length already counts it; pad it with zeros to
// a multiple of 64 and HMAC it with crypto/hmac.
func rfc3489MAC(key, pkt []byte, off int) []byte {
	text := append([]byte(nil), pkt[:off]...)
	for len(text)%64 != 0 {
		text = append(text, 0)
	}
	h := hmac.New(sha1.New, key)
	h.Write(text)
	return h.Sum(nil)
}

// plainMAC is HMAC-SHA1 of pkt[:off] with the header length set to
// length, unpadded: the RFC 5389 form, or Vovida's with length 0.
func plainMAC(key, pkt []byte, off, length int) []byte {
	text := append([]byte(nil), pkt[:off]...)
	binary.BigEndian.PutUint16(text[2:], uint16(length))
	h := hmac.New(sha1.New, key)
	h.Write(text)
	return h.Sum(nil)
}

// sign writes mac into the 20-byte MESSAGE-INTEGRITY value at off.
func sign(pkt []byte, off int, mac []byte) []byte {
	copy(pkt[off+4:off+24], mac)
	return pkt
}

var (
	classicID = TransactionID{0x7a, 0x1b, 0x5c, 0x03, 0x91, 0x22, 0xe8, 0x4f, 0x10, 0x6d, 0xa0, 0x33, 0xc2, 0x58, 0x0e, 0xf7}
	cookieID  = TransactionID{0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}
)

// Real classic TR-111 requests, as the agents of PROTOCOL-NOTES 1 build
// them, byte by byte.
var (
	// A first request: USERNAME, CONNECTION-REQUEST-BINDING, no
	// integrity.
	tr111Plain = wire(
		"00 01 00 24", // Binding Request, length 36
		"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7", // 16-byte id, no cookie
		`00 06 00 08 "CPE57689"`,                          // USERNAME, 8 bytes
		`c0 01 00 14 "dslforum.org/TR-111" 20`,            // CONNECTION-REQUEST-BINDING
	)

	// After a 401: USERNAME padded with spaces, CONNECTION-REQUEST-BINDING,
	// MESSAGE-INTEGRITY (RFC 3489 form, key "s3cr3t") at offset 60, which
	// the 64-byte padding extends by 4 zero bytes.
	tr111MIOffset = 60
	tr111MIKey    = []byte("s3cr3t")
	tr111MI       = func() []byte {
		pkt := wire(
			"00 01 00 40", // Binding Request, length 64: counts MESSAGE-INTEGRITY
			"7a 1b 5c 03 91 22 e8 4f 10 6d a0 33 c2 58 0e f7",
			`00 06 00 0c "cpe-0001x" 20 20 20`,                                        // USERNAME "cpe-0001x", space-padded
			`c0 01 00 14 "dslforum.org/TR-111" 20`,                                    // CONNECTION-REQUEST-BINDING
			"00 08 00 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", // MESSAGE-INTEGRITY
		)
		return sign(pkt, 60, rfc3489MAC(tr111MIKey, pkt, 60))
	}()

	// RFC 5769 2.1 sample request (RFC 5389: SOFTWARE, PRIORITY,
	// ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT).
	rfc5769Key     = []byte("VOkJxbRl1RmTxUk/WvJxBt")
	rfc5769Request = wire(
		"00 01 00 58",
		"21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae",
		"80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74", // SOFTWARE "STUN test client"
		"00 24 00 04 6e 00 01 ff",                                     // PRIORITY
		"80 29 00 08 93 2f f9 b1 51 26 3b 36",                         // ICE-CONTROLLED
		"00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20",             // USERNAME "evtj:h6vY"
		"00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2",
		"80 28 00 04 e5 7a 3b cf",
	)
	// RFC 5769 2.2 sample IPv4 response.
	rfc5769IPv4Response = wire(
		"01 01 00 3c",
		"21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae",
		"80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20", // SOFTWARE "test vector"
		"00 20 00 08 00 01 a1 47 e1 12 a6 43",             // XOR-MAPPED-ADDRESS 192.0.2.1:32853
		"00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7",
		"80 28 00 04 c0 7d 4c 96",
	)
	// RFC 5769 2.3 sample IPv6 response.
	rfc5769IPv6Response = wire(
		"01 01 00 48",
		"21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae",
		"80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20",
		"00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9", // [2001:db8:1234:5678:11:2233:4455:6677]:32853
		"00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41",
		"80 28 00 04 c8 fb 0b 4c",
	)
)
