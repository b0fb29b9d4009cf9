package wirehex

import (
	"bytes"
	"testing"
)

func TestBytes(t *testing.T) {
	got := Bytes("0001 0004 | Binding Request, length 4", `c002 "ab" 00 ff`)
	want := []byte{0x00, 0x01, 0x00, 0x04, 0xc0, 0x02, 'a', 'b', 0x00, 0xff}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("bad hex did not panic")
		}
	}()
	Bytes("zz")
}
