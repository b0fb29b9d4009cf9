package registry

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCRUD(t *testing.T) {
	ctx := context.Background()
	r := open(t, newMemStore())
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	r.now = clock.now

	d := testDevice(1)
	d.CreatedAt = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) // ignored
	saved, created, err := r.Put(ctx, d)
	if err != nil || !created {
		t.Fatalf("Put new = %v, created %v", err, created)
	}
	sameDevice(t, saved, d)
	if saved.CreatedAt.Year() != 2025 || !saved.CreatedAt.Equal(saved.UpdatedAt) {
		t.Errorf("new device times: created %v updated %v", saved.CreatedAt, saved.UpdatedAt)
	}
	got, ok := r.Get(d.ID)
	if !ok {
		t.Fatal("Get after Put: not found")
	}
	sameDevice(t, got, d)

	d2 := testDevice(1)
	d2.Password = "changed"
	d2.Transports = nil
	saved2, created, err := r.Put(ctx, d2)
	if err != nil || created {
		t.Fatalf("Put replace = %v, created %v", err, created)
	}
	if !saved2.CreatedAt.Equal(saved.CreatedAt) || !saved2.UpdatedAt.After(saved.UpdatedAt) {
		t.Errorf("replace times: created %v (was %v), updated %v (was %v)",
			saved2.CreatedAt, saved.CreatedAt, saved2.UpdatedAt, saved.UpdatedAt)
	}
	sameDevice(t, saved2, d2)

	upd, err := r.Update(ctx, d.ID, func(d *Device) error {
		d.Username = "patched"
		return nil
	})
	if err != nil || upd.Username != "patched" || upd.Password != "changed" {
		t.Fatalf("Update = %+v, %v", upd, err)
	}
	if !upd.CreatedAt.Equal(saved.CreatedAt) {
		t.Errorf("Update changed CreatedAt")
	}

	errFn := errors.New("fn says no")
	if _, err := r.Update(ctx, d.ID, func(*Device) error { return errFn }); err != errFn {
		t.Errorf("Update fn error = %v, want it as is", err)
	}
	if got, _ := r.Get(d.ID); got.Username != "patched" {
		t.Errorf("failed Update wrote: %+v", got)
	}
	var fe *FieldError
	if _, err := r.Update(ctx, d.ID, func(d *Device) error { d.ID = "other"; return nil }); !errors.As(err, &fe) || fe.Field != "id" {
		t.Errorf("Update changing id = %v, want FieldError id", err)
	}
	if _, err := r.Update(ctx, d.ID, func(d *Device) error { d.UDPAddress = "nope"; return nil }); !errors.As(err, &fe) || fe.Field != "udp_address" {
		t.Errorf("Update to invalid = %v, want FieldError udp_address", err)
	}
	if _, err := r.Update(ctx, "missing", func(*Device) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update missing = %v, want ErrNotFound", err)
	}
	if r.Len() != 1 {
		t.Errorf("Len = %d, want 1", r.Len())
	}

	if err := r.Delete(ctx, d.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, ok := r.Get(d.ID); ok {
		t.Error("Get after Delete: found")
	}
	if _, ok := r.Live(d.ID); ok {
		t.Error("Live after Delete: found")
	}
	if err := r.Delete(ctx, d.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete again = %v, want ErrNotFound", err)
	}
	if r.Len() != 0 {
		t.Errorf("Len = %d, want 0", r.Len())
	}
}

func TestReadsReturnCopies(t *testing.T) {
	r := open(t, newMemStore())
	d := mustPut(t, r, testDevice(1))
	d.Transports[0] = "mangled"
	r.RecordWake(d.ID, WakeRecord{Status: "sent"})
	l, _ := r.Live(d.ID)
	l.Wakes[0].Status = "mangled"
	devs, _ := r.List("", 0)
	devs[0].Transports[0] = "mangled"

	got, _ := r.Get(d.ID)
	if got.Transports[0] != TransportXMPP {
		t.Errorf("Get shares Transports with an earlier result: %v", got.Transports)
	}
	if l, _ := r.Live(d.ID); l.Wakes[0].Status != "sent" {
		t.Errorf("Live shares Wakes with an earlier result: %v", l.Wakes)
	}
}

func TestValidation(t *testing.T) {
	long := func(n int) string { return string(make([]byte, n)) }
	rep := func(s string, n int) string {
		b := make([]byte, 0, n)
		for len(b) < n {
			b = append(b, s...)
		}
		return string(b[:n])
	}
	tests := []struct {
		name  string
		edit  func(*Device)
		field string // "" = valid
	}{
		{"all fields valid", func(*Device) {}, ""},
		{"only an id", func(d *Device) { *d = Device{ID: d.ID} }, ""},
		{"unicode id", func(d *Device) { d.ID = "CPE-Ünïcødé 1" }, ""},
		{"id at max length", func(d *Device) { d.ID = rep("a", MaxIDLen) }, ""},
		{"https url with IPv6 host", func(d *Device) { d.ConnectionRequestURL = "https://[2001:db8::1]:30005/x?y=1" }, ""},
		{"IPv6 udp address", func(d *Device) { d.UDPAddress = "[2001:db8::1]:7547" }, ""},
		{"bare jid", func(d *Device) { d.XMPPJID = "cpe@example.net" }, ""},
		{"jid resource with @ and /", func(d *Device) { d.XMPPJID = "other@example.net/a@b/c" }, ""},
		{"two transports", func(d *Device) { d.Transports = []Transport{TransportHTTP, TransportUDP} }, ""},

		{"empty id", func(d *Device) { d.ID = "" }, "id"},
		{"id too long", func(d *Device) { d.ID = rep("a", MaxIDLen+1) }, "id"},
		{"id with newline", func(d *Device) { d.ID = "a\nb" }, "id"},
		{"id with NUL", func(d *Device) { d.ID = "a\x00b" }, "id"},
		{"id with DEL", func(d *Device) { d.ID = "a\x7fb" }, "id"},
		{"id not UTF-8", func(d *Device) { d.ID = "a\xffb" }, "id"},
		{"id with line separator", func(d *Device) { d.ID = "a\u2028b" }, "id"},

		{"url relative", func(d *Device) { d.ConnectionRequestURL = "/cr" }, "connection_request_url"},
		{"url ftp", func(d *Device) { d.ConnectionRequestURL = "ftp://10.0.0.1/" }, "connection_request_url"},
		{"url no host", func(d *Device) { d.ConnectionRequestURL = "http:///cr" }, "connection_request_url"},
		{"url port only", func(d *Device) { d.ConnectionRequestURL = "http://:7547/" }, "connection_request_url"},
		{"url opaque", func(d *Device) { d.ConnectionRequestURL = "http:10.0.0.1" }, "connection_request_url"},
		{"url user-info", func(d *Device) { d.ConnectionRequestURL = "http://u:p@10.0.0.1/" }, "connection_request_url"},
		{"url port 0", func(d *Device) { d.ConnectionRequestURL = "http://10.0.0.1:0/" }, "connection_request_url"},
		{"url port too big", func(d *Device) { d.ConnectionRequestURL = "http://10.0.0.1:65536/" }, "connection_request_url"},
		{"url too long", func(d *Device) { d.ConnectionRequestURL = "http://h/" + rep("a", MaxURLLen) }, "connection_request_url"},
		{"url with tab", func(d *Device) { d.ConnectionRequestURL = "http://h/\t" }, "connection_request_url"},

		{"username too long", func(d *Device) { d.Username = rep("u", MaxFieldLen+1) }, "username"},
		{"username with CR", func(d *Device) { d.Username = "a\rb" }, "username"},
		{"password with NUL", func(d *Device) { d.Password = long(3) }, "password"},
		{"password too long", func(d *Device) { d.Password = rep("p", MaxFieldLen+1) }, "password"},
		{"stun username with C1 control", func(d *Device) { d.STUNUsername = "a\u0085b" }, "stun_username"},
		{"stun username with trailing space", func(d *Device) { d.STUNUsername = "cpe-1 " }, "stun_username"},
		{"stun password not UTF-8", func(d *Device) { d.STUNPassword = "\xc3" }, "stun_password"},
		{"xmpp password too long", func(d *Device) { d.XMPPPassword = rep("x", MaxFieldLen+1) }, "xmpp_password"},

		{"udp no port", func(d *Device) { d.UDPAddress = "192.0.2.1" }, "udp_address"},
		{"udp port 0", func(d *Device) { d.UDPAddress = "192.0.2.1:0" }, "udp_address"},
		{"udp port too big", func(d *Device) { d.UDPAddress = "192.0.2.1:65536" }, "udp_address"},
		{"udp hostname", func(d *Device) { d.UDPAddress = "cpe.example.net:7547" }, "udp_address"},
		{"udp IPv6 without brackets", func(d *Device) { d.UDPAddress = "2001:db8::1:7547" }, "udp_address"},
		{"udp IPv6 zone", func(d *Device) { d.UDPAddress = "[fe80::1%eth0]:7547" }, "udp_address"},

		{"jid no localpart", func(d *Device) { d.XMPPJID = "example.net" }, "xmpp_jid"},
		{"jid empty localpart", func(d *Device) { d.XMPPJID = "@example.net" }, "xmpp_jid"},
		{"jid empty domain", func(d *Device) { d.XMPPJID = "cpe@" }, "xmpp_jid"},
		{"jid empty resource", func(d *Device) { d.XMPPJID = "cpe@example.net/" }, "xmpp_jid"},
		{"jid two @ in bare", func(d *Device) { d.XMPPJID = "a@b@example.net" }, "xmpp_jid"},
		{"jid forbidden localpart char", func(d *Device) { d.XMPPJID = "a<b@example.net" }, "xmpp_jid"},
		{"jid space", func(d *Device) { d.XMPPJID = "a b@example.net" }, "xmpp_jid"},
		{"jid localpart too long", func(d *Device) { d.XMPPJID = rep("a", MaxJIDPart+1) + "@example.net" }, "xmpp_jid"},
		{"jid control in resource", func(d *Device) { d.XMPPJID = "a@example.net/r\x01" }, "xmpp_jid"},

		{"unknown transport", func(d *Device) { d.Transports = []Transport{"carrier-pigeon"} }, "transports"},
		{"empty transport", func(d *Device) { d.Transports = []Transport{""} }, "transports"},
		{"duplicate transport", func(d *Device) { d.Transports = []Transport{TransportUDP, TransportHTTP, TransportUDP} }, "transports"},
	}
	r := open(t, newMemStore())
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDevice(i)
			tt.edit(&d)
			_, _, err := r.Put(context.Background(), d)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Put = %v, want success", err)
				}
				got, _ := r.Get(d.ID)
				sameDevice(t, got, d)
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Put = %v, want a FieldError wrapping ErrInvalid", err)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if _, ok := r.Get(d.ID); ok && d.ID != "" {
				t.Errorf("invalid device was stored")
			}
		})
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	r := open(t, newMemStore())
	d := testDevice(1)
	d.Password = "s3cret-password\x01"
	_, _, err := r.Put(context.Background(), d)
	if err == nil {
		t.Fatal("Put accepted a control character")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Errorf("error quotes the secret: %q", got)
	}
}

func TestConflicts(t *testing.T) {
	ctx := context.Background()
	r := open(t, newMemStore())
	a := testDevice(1)
	a.XMPPJID = "CPE1@Xmpp.Example.NET/home"
	a.UDPAddress = "[2001:db8::1]:7547"
	mustPut(t, r, a)

	tests := []struct {
		name  string
		edit  func(*Device)
		field string
	}{
		{"same stun username", func(d *Device) { d.STUNUsername = a.STUNUsername }, "stun_username"},
		{"same bare jid", func(d *Device) { d.XMPPJID = "cpe1@xmpp.example.net" }, "xmpp_jid"},
		{"same jid other resource and case", func(d *Device) { d.XMPPJID = "cpe1@XMPP.example.net/work" }, "xmpp_jid"},
		{"same udp address", func(d *Device) { d.UDPAddress = "[2001:db8:0::1]:7547" }, "udp_address"},
		{"same udp address as written", func(d *Device) { d.UDPAddress = a.UDPAddress }, "udp_address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testDevice(2)
			tt.edit(&b)
			_, _, err := r.Put(ctx, b)
			var ce *ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) || ce.Field != tt.field {
				t.Fatalf("Put = %v, want ConflictError on %s", err, tt.field)
			}
			if _, ok := r.Get(b.ID); ok {
				t.Error("conflicting device was stored")
			}
		})
	}

	t.Run("v4-mapped spelling of an IPv4 binding", func(t *testing.T) {
		c := testDevice(3)
		mustPut(t, r, c)
		b := testDevice(2)
		ap := netip.MustParseAddrPort(c.UDPAddress)
		b.UDPAddress = netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()).String()
		var ce *ConflictError
		if _, _, err := r.Put(ctx, b); !errors.As(err, &ce) || ce.Field != "udp_address" {
			t.Fatalf("Put %s = %v, want ConflictError on udp_address", b.UDPAddress, err)
		}
	})
	t.Run("a device may keep its own values", func(t *testing.T) {
		mustPut(t, r, a)
	})
	t.Run("a released value is free", func(t *testing.T) {
		if _, err := r.Update(ctx, a.ID, func(d *Device) error { d.STUNUsername = "renamed"; return nil }); err != nil {
			t.Fatal(err)
		}
		b := testDevice(2)
		b.STUNUsername = a.STUNUsername
		mustPut(t, r, b)
		if err := r.Delete(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		b.XMPPJID = a.XMPPJID
		b.UDPAddress = a.UDPAddress
		mustPut(t, r, b)
	})
}

func TestLookups(t *testing.T) {
	r := open(t, newMemStore())
	v4 := testDevice(1)
	v6 := testDevice(2)
	v6.UDPAddress = "[2001:DB8::a]:7547"
	v6.XMPPJID = "Box.42@Broker.Example/tr069"
	bare := testDevice(3)
	bare.XMPPJID = "bare@broker.example"
	for _, d := range []Device{v4, v6, bare} {
		mustPut(t, r, d)
	}
	tests := []struct {
		name   string
		lookup func() (Device, bool)
		want   string // device id, "" = none
	}{
		{"id", func() (Device, bool) { return r.Get(v4.ID) }, v4.ID},
		{"unknown id", func() (Device, bool) { return r.Get("nope") }, ""},
		{"stun username", func() (Device, bool) { return r.BySTUNUsername(v6.STUNUsername) }, v6.ID},
		{"stun username is case-sensitive", func() (Device, bool) { return r.BySTUNUsername("STUN-2") }, ""},
		{"empty stun username", func() (Device, bool) { return r.BySTUNUsername("") }, ""},
		{"full jid as registered", func() (Device, bool) { return r.ByJID("Box.42@Broker.Example/tr069") }, v6.ID},
		{"bare jid of a full registration", func() (Device, bool) { return r.ByJID("box.42@broker.example") }, v6.ID},
		{"full jid of a bare registration", func() (Device, bool) { return r.ByJID("bare@BROKER.example/x") }, bare.ID},
		{"jid other resource", func() (Device, bool) { return r.ByJID("box.42@broker.example/other") }, v6.ID},
		{"unknown jid", func() (Device, bool) { return r.ByJID("box.43@broker.example") }, ""},
		{"udp IPv4", func() (Device, bool) { return r.ByUDPAddress(v4.UDPAddress) }, v4.ID},
		{"udp IPv4 as v4-mapped IPv6", func() (Device, bool) { return r.ByUDPAddress("[::ffff:192.0.0.1]:7547") }, v4.ID},
		{"udp IPv6 other spelling", func() (Device, bool) { return r.ByUDPAddress("[2001:db8:0:0::A]:7547") }, v6.ID},
		{"udp other port", func() (Device, bool) { return r.ByUDPAddress("[2001:db8::a]:7548") }, ""},
		{"udp garbage", func() (Device, bool) { return r.ByUDPAddress("garbage") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := tt.lookup()
			if ok != (tt.want != "") || d.ID != tt.want {
				t.Errorf("got %q, %v; want %q", d.ID, ok, tt.want)
			}
		})
	}

	t.Run("old keys go with a replace", func(t *testing.T) {
		d := v4
		d.STUNUsername, d.XMPPJID, d.UDPAddress = "new-stun", "new@broker.example", "198.51.100.1:1"
		mustPut(t, r, d)
		for name, found := range map[string]bool{
			"old stun": lookupOK(r.BySTUNUsername(v4.STUNUsername)),
			"old jid":  lookupOK(r.ByJID(v4.XMPPJID)),
			"old udp":  lookupOK(r.ByUDPAddress(v4.UDPAddress)),
		} {
			if found {
				t.Errorf("%s still found", name)
			}
		}
		for name, found := range map[string]bool{
			"new stun": lookupOK(r.BySTUNUsername("new-stun")),
			"new jid":  lookupOK(r.ByJID("new@broker.example")),
			"new udp":  lookupOK(r.ByUDPAddress("198.51.100.1:1")),
		} {
			if !found {
				t.Errorf("%s not found", name)
			}
		}
	})
}

func lookupOK(_ Device, ok bool) bool { return ok }

func TestList(t *testing.T) {
	ctx := context.Background()
	r := open(t, newMemStore())
	want := map[string]bool{}
	for i := range 250 {
		d := mustPut(t, r, Device{ID: fmt.Sprintf("d%03d", (i*7)%250)}) // out of order
		want[d.ID] = true
	}

	t.Run("limits", func(t *testing.T) {
		for _, tt := range []struct{ limit, want int }{{0, DefaultListLimit}, {-1, DefaultListLimit}, {7, 7}, {5000, 250}} {
			devs, _ := r.List("", tt.limit)
			if len(devs) != tt.want {
				t.Errorf("List(limit %d) gave %d devices, want %d", tt.limit, len(devs), tt.want)
			}
		}
	})
	t.Run("last page has no cursor", func(t *testing.T) {
		devs, next := r.List("d149", 100)
		if len(devs) != 100 || next != "" {
			t.Errorf("exact last page: %d devices, next %q", len(devs), next)
		}
		if devs, next := r.List("d249", 100); len(devs) != 0 || next != "" {
			t.Errorf("past the end: %d devices, next %q", len(devs), next)
		}
		if devs, _ := r.List("d0", 1); devs[0].ID != "d000" {
			t.Errorf("cursor between ids: first %q", devs[0].ID)
		}
	})
	t.Run("pages with deletes between", func(t *testing.T) {
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			devs, next := r.List(cursor, 40)
			for _, d := range devs {
				got = append(got, d.ID)
			}
			if page == 1 {
				// Delete behind the cursor, the next id, and ahead.
				for _, id := range []string{"d010", devs[len(devs)-1].ID, "d081", "d200", "d249"} {
					if err := r.Delete(ctx, id); err != nil {
						t.Fatal(err)
					}
					if id > next {
						delete(want, id)
					}
				}
				// And add some ahead.
				for _, id := range []string{"d0805", "d300"} {
					mustPut(t, r, Device{ID: id})
					want[id] = true
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if !slices.IsSorted(got) {
			t.Errorf("not ascending: %v", got)
		}
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("repeats: %v", got)
		}
		for _, id := range got {
			delete(want, id)
		}
		for id := range want {
			if _, ok := r.Get(id); ok {
				t.Errorf("%s missing from the walk", id)
			}
		}
	})
}

func TestConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	const n = 32
	t.Run("one winner for a contested stun username", func(t *testing.T) {
		r := open(t, newMemStore())
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				d := testDevice(i)
				d.STUNUsername = "contested"
				_, _, errs[i] = r.Put(ctx, d)
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			var ce *ConflictError
			switch {
			case err == nil:
				won++
			case !errors.As(err, &ce) || ce.Field != "stun_username":
				t.Errorf("Put = %v, want success or ConflictError", err)
			}
		}
		if won != 1 {
			t.Errorf("%d writers won, want 1", won)
		}
	})
	t.Run("updates of one device do not interleave", func(t *testing.T) {
		r := open(t, newMemStore())
		mustPut(t, r, Device{ID: "counter", Username: "0"})
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				_, err := r.Update(ctx, "counter", func(d *Device) error {
					var v int
					fmt.Sscan(d.Username, &v)
					d.Username = fmt.Sprint(v + 1)
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if d, _ := r.Get("counter"); d.Username != fmt.Sprint(n) {
			t.Errorf("counter = %s, want %d", d.Username, n)
		}
	})
	t.Run("different devices share commits", func(t *testing.T) {
		cs := &countingStore{Store: newMemStore()}
		r := open(t, cs)
		base := cs.count()
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() { mustPut(t, r, testDevice(i)) })
		}
		wg.Wait()
		if r.Len() != 200 {
			t.Errorf("Len = %d, want 200", r.Len())
		}
		if w := cs.count() - base; w > 200 || w < 1 {
			t.Errorf("%d store writes for 200 Puts", w)
		}
		t.Logf("200 concurrent Puts took %d store writes", cs.count()-base)
	})
}

func TestFailedWriteChangesNothing(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := open(t, st)
	a := mustPut(t, r, testDevice(1))
	errDisk := errors.New("disk on fire")
	st.setFail(errDisk)

	b := testDevice(1)
	b.STUNUsername = "moved"
	if _, _, err := r.Put(ctx, b); !errors.Is(err, errDisk) {
		t.Errorf("Put = %v, want the store's error", err)
	}
	if _, _, err := r.Put(ctx, testDevice(2)); !errors.Is(err, errDisk) {
		t.Errorf("Put new = %v, want the store's error", err)
	}
	if err := r.Delete(ctx, a.ID); !errors.Is(err, errDisk) {
		t.Errorf("Delete = %v, want the store's error", err)
	}
	got, ok := r.Get(a.ID)
	if !ok || got.STUNUsername != a.STUNUsername {
		t.Errorf("index changed by a failed write: %+v", got)
	}
	if _, ok := r.BySTUNUsername("moved"); ok {
		t.Error("failed write's key indexed")
	}
	if r.Len() != 1 {
		t.Errorf("Len = %d", r.Len())
	}
	st.setFail(nil)
	mustPut(t, r, b) // the failed write released its reservations
}

func TestCancelledWrite(t *testing.T) {
	r := open(t, newMemStore())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := r.Put(ctx, testDevice(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Put = %v, want context.Canceled", err)
	}
	if r.Len() != 0 {
		t.Error("cancelled Put stored a device")
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	r, err := New(newMemStore(), Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	d := mustPut(t, r, testDevice(1))
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if _, _, err := r.Put(ctx, testDevice(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close = %v", err)
	}
	if _, err := r.Update(ctx, d.ID, func(*Device) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close = %v", err)
	}
	if err := r.Delete(ctx, d.ID); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close = %v", err)
	}
	if r.UpdateLive(d.ID, func(*Live) {}) {
		t.Error("UpdateLive after Close reported success")
	}
	if err := r.Flush(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v", err)
	}
	if _, ok := r.Get(d.ID); !ok {
		t.Error("Get after Close: reads should keep answering")
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"no key", Options{}, ErrBadKey},
		{"short key", Options{Key: testKey[:16]}, ErrBadKey},
		{"negative interval", Options{Key: testKey, LiveFlushInterval: -time.Second}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(newMemStore(), tt.opts)
			if err == nil {
				r.Close()
				t.Fatal("New accepted bad options")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("New = %v, want %v", err, tt.want)
			}
		})
	}
}
