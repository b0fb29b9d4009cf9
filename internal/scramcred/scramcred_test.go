package scramcred

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"testing"
)

// RFC 5802 5 example: user "user", password "pencil", salt
// QSXCR+Q6sek8bf92, 4096 iterations. The server signature in that example
// is v=rmF9pqV8S7suAoZWja4dJRkFsKQ= over its AuthMessage; here we check
// the keys that signature is computed from, recomputing the proof.
func TestRFC5802Example(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("QSXCR+Q6sek8bf92")
	c, err := DeriveWith("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	auth := "n=user,r=fyko+d2lbbFgONRv9qkxdawL," +
		"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096," +
		"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j"
	sig := HMAC(sha1.New, c.SHA1.ServerKey, auth)
	if got := base64.StdEncoding.EncodeToString(sig); got != "rmF9pqV8S7suAoZWja4dJRkFsKQ=" {
		t.Fatalf("server signature %s", got)
	}
	// ClientProof p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts= XOR ClientSignature gives
	// ClientKey, whose hash must be StoredKey.
	proof, _ := base64.StdEncoding.DecodeString("v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
	csig := HMAC(sha1.New, c.SHA1.StoredKey, auth)
	ck := make([]byte, len(proof))
	for i := range ck {
		ck[i] = proof[i] ^ csig[i]
	}
	sum := sha1.Sum(ck)
	if !bytes.Equal(sum[:], c.SHA1.StoredKey) {
		t.Fatal("client proof does not verify against StoredKey")
	}
}

func TestRoundTripAndPlain(t *testing.T) {
	c, err := Derive("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	if !IsEncoded(s) || bytes.Contains([]byte(s), []byte("s3cret")) {
		t.Fatalf("encoded form %q", s)
	}
	p, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != s {
		t.Fatal("round trip changed the credential")
	}
	if !p.VerifyPlain("s3cret") || p.VerifyPlain("s3cret ") || p.VerifyPlain("") {
		t.Fatal("VerifyPlain")
	}
	d, _ := Derive("s3cret")
	if bytes.Equal(d.Salt, c.Salt) {
		t.Fatal("two derivations share a salt")
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := DeriveWith("x", []byte("salt"), 1)
	enc := good.String()
	for name, s := range map[string]string{
		"empty":      "",
		"plain":      "password",
		"no fields":  "scram1$",
		"bad iter":   "scram1$0$" + enc[len("scram1$1$"):],
		"short":      enc[:len(enc)-10],
		"bad base64": enc[:len(enc)-2] + "!!",
		"extra":      enc + "$AAAA",
	} {
		if _, err := Parse(s); !errors.Is(err, ErrScramcredFormat) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}
