package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openBolt(t testing.TB, dir string, key []byte) (*Registry, error) {
	t.Helper()
	st, err := OpenBolt(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	r, err := New(st, Options{Key: key})
	if err != nil {
		st.Close()
		return nil, err
	}
	return r, nil
}

func TestRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := openBolt(t, dir, testKey)
	if err != nil {
		t.Fatal(err)
	}
	var want []Device
	for i := range 50 {
		want = append(want, mustPut(t, r, testDevice(i)))
	}
	if err := r.Delete(ctx, want[7].ID); err != nil {
		t.Fatal(err)
	}
	want = append(want[:7], want[8:]...)
	for i := range 15 {
		r.RecordWake(want[0].ID, WakeRecord{At: time.Unix(int64(i), 0).UTC(), Status: fmt.Sprint(i), DurationMS: 1.5})
	}
	r.RecordWake(want[1].ID, WakeRecord{Status: "sent", Transport: "udp"})
	wantLive0, _ := r.Live(want[0].ID)
	if err := r.Close(); err != nil { // flushes live state
		t.Fatal(err)
	}

	r, err = openBolt(t, dir, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Len() != len(want) {
		t.Errorf("Len = %d after restart, want %d", r.Len(), len(want))
	}
	for _, w := range want {
		got, ok := r.Get(w.ID)
		if !ok {
			t.Errorf("%s lost", w.ID)
			continue
		}
		sameDevice(t, got, w)
		if !got.CreatedAt.Equal(w.CreatedAt) || !got.UpdatedAt.Equal(w.UpdatedAt) {
			t.Errorf("%s times changed: %v %v, want %v %v", w.ID, got.CreatedAt, got.UpdatedAt, w.CreatedAt, w.UpdatedAt)
		}
	}
	if _, ok := r.ByJID(strings.ToUpper(want[3].XMPPJID[:4]) + want[3].XMPPJID[4:]); !ok {
		t.Error("JID index not rebuilt")
	}
	if _, ok := r.ByUDPAddress(want[3].UDPAddress); !ok {
		t.Error("UDP index not rebuilt")
	}
	l, _ := r.Live(want[0].ID)
	if fmt.Sprint(l) != fmt.Sprint(wantLive0) || len(l.Wakes) != MaxWakeRecords || l.Wakes[MaxWakeRecords-1].Status != "14" {
		t.Errorf("live state after restart:\n got %v\nwant %v", l, wantLive0)
	}
	if l, _ := r.Live(want[1].ID); len(l.Wakes) != 1 || l.Wakes[0].Transport != "udp" {
		t.Errorf("live state after restart: %v", l)
	}
	if devs, _ := r.List("", 0); len(devs) != min(len(want), DefaultListLimit) || devs[0].ID != want[0].ID {
		t.Errorf("List after restart: %d devices", len(devs))
	}
}

const childDirEnv = "CRRELAY_REGISTRY_KILL9_DIR"

// TestKill9 starts a child that writes devices and prints each id once Put
// has returned, SIGKILLs it mid-stream, and checks that every id it
// printed is in the database.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "acked ")
		if !ok {
			continue
		}
		acked = append(acked, id)
		if len(acked) == 300 && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		// Keep reading: lines already in the pipe were acknowledged too.
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before it was killed: %v", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}

	key, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := openBolt(t, dir, key)
	if err != nil {
		t.Fatalf("reopening after kill -9: %v", err)
	}
	defer r.Close()
	for _, id := range acked {
		d, ok := r.Get(id)
		if !ok {
			t.Errorf("acknowledged %s lost", id)
			continue
		}
		var i int
		fmt.Sscanf(id, "dev-%d", &i)
		sameDevice(t, d, testDevice(i))
	}
	t.Logf("%d acknowledged before the kill, %d in the database", len(acked), r.Len())
}

// TestKill9Child is TestKill9's child; it runs only when started by it.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("run by TestKill9")
	}
	key, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := openBolt(t, dir, key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const writers = 8
	for w := range writers {
		wg.Go(func() {
			for i := w; ; i += writers {
				if _, _, err := r.Put(context.Background(), testDevice(i)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "acked %s\n", testDevice(i).ID) // one write(2) per line
				mu.Unlock()
				if i > 1_000_000 {
					return
				}
			}
		})
	}
	wg.Wait() // killed long before
}

func TestSecretsAtRest(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := openBolt(t, dir, key)
	if err != nil {
		t.Fatal(err)
	}
	d := testDevice(1)
	d.Username = "plain-username-canary"
	d.Password = "cr-password-canary-7f3a"
	d.STUNPassword = "stun-password-canary-91bc"
	d.XMPPPassword = "xmpp-password-canary-c0de"
	mustPut(t, r, d)
	// Update twice so freed pages hold older versions too.
	for range 2 {
		if _, err := r.Update(context.Background(), d.ID, func(d *Device) error { d.AllowBasic = !d.AllowBasic; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(d.Username)) {
		t.Fatal("the scan cannot see plaintext fields; it proves nothing")
	}
	for _, secret := range []string{d.Password, d.STUNPassword, d.XMPPPassword} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the database file holds a plaintext secret (%d bytes)", len(secret))
		}
	}

	t.Run("another key", func(t *testing.T) {
		other := bytes.Repeat([]byte{1}, KeyLen)
		r, err := openBolt(t, dir, other)
		if !errors.Is(err, ErrBadKey) {
			if r != nil {
				r.Close()
			}
			t.Fatalf("New with another key = %v, want ErrBadKey", err)
		}
	})
	t.Run("the right key", func(t *testing.T) {
		r, err := openBolt(t, dir, key)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, _ := r.Get(d.ID)
		if got.Password != d.Password || got.STUNPassword != d.STUNPassword {
			t.Error("secrets do not round-trip")
		}
		// The XMPP password was never stored, only credentials that
		// verify it.
		c, ok := r.XMPPCredentials(d.XMPPJID)
		if !ok || !c.VerifyPlain(d.XMPPPassword) || got.XMPPPassword == d.XMPPPassword {
			t.Error("XMPP credentials do not verify the password after a reopen")
		}
	})
}

// TestMovedSealedValue copies one device's stored record onto another id:
// the sealed secrets must refuse to open there.
func TestMovedSealedValue(t *testing.T) {
	st := newMemStore()
	r := open(t, st)
	mustPut(t, r, testDevice(1))
	mustPut(t, r, testDevice(2))
	r.Close()
	a := st.buckets[BucketDevices][testDevice(1).ID]
	st.buckets[BucketDevices][testDevice(2).ID] = a

	if _, err := New(st, Options{Key: testKey}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("New = %v, want ErrCorrupt", err)
	}

	t.Run("swapped fields", func(t *testing.T) {
		s, _ := newSealer(testKey)
		dc := decoder{s: s}
		d := testDevice(3)
		enc := encodeDevice(nil, s, newRecord(&d))
		if _, err := dc.device([]byte(d.ID), enc); err != nil {
			t.Fatalf("control: %v", err)
		}
		head, fields := splitEncoded(t, enc)
		fields[fPassword-1], fields[fSTUNPassword-1] = fields[fSTUNPassword-1], fields[fPassword-1]
		if _, err := dc.device([]byte(d.ID), joinEncoded(head, fields)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decode with swapped sealed fields = %v, want ErrCorrupt", err)
		}
	})
}

// splitEncoded cuts an encoded device into its fixed head and its fields.
func splitEncoded(t *testing.T, enc []byte) (head []byte, fields [][]byte) {
	t.Helper()
	p := enc[1:]
	for range 2 {
		_, n := binary.Varint(p)
		p = p[n:]
	}
	p = p[2:]
	head = enc[:len(enc)-len(p)]
	for range nFields - 1 {
		l, n := binary.Uvarint(p)
		fields = append(fields, p[n:n+int(l)])
		p = p[n+int(l):]
	}
	if len(p) != 0 {
		t.Fatal("trailing bytes")
	}
	return head, fields
}

func joinEncoded(head []byte, fields [][]byte) []byte {
	b := bytes.Clone(head)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}
