package main

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"testing"
	"time"

	"github.com/crrelay/crrelay/stun"
)

// echoServer answers every datagram on a loopback socket with a copy of
// its header turned into a response of type t (and, for an error, a 401
// ERROR-CODE first), as a STUN server would, without decoding. It is
// ready when it returns.
func echoServer(t *testing.T, typ stun.MessageType) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		out := make([]byte, 0, 64)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < stun.HeaderSize {
				continue
			}
			var id stun.TransactionID
			copy(id[:], buf[4:20])
			out = stun.StartMessage(out, typ, &id)
			if typ == stun.TypeBindingError {
				out = stun.AppendErrorCode(out, 401, "")
			}
			_, _ = c.WriteToUDPAddrPort(out, from)
		}
	}()
	return c
}

func TestRunLoadCountsAnswers(t *testing.T) {
	cases := []struct {
		name    string
		typ     stun.MessageType
		reqs    requestSet
		wantErr bool
	}{
		{"classic TR-111, success", stun.TypeBindingSuccess, classicTR111Requests(makeDevices("t-", 100, false)), false},
		{"plain RFC 5389, success", stun.TypeBindingSuccess, plainRequests(100), false},
		{"classic TR-111, 401", stun.TypeBindingError, classicTR111Requests(makeDevices("t-", 100, false)), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := echoServer(t, c.typ)
			target := srv.LocalAddr().(*net.UDPAddr).AddrPort()
			cfg := loadConfig{sockets: 4, window: 64, batch: 8, warmup: 50 * time.Millisecond, duration: 200 * time.Millisecond}
			// The echo server runs in this process: its CPU is ours.
			r, err := runLoad(context.Background(), target, os.Getpid(), c.reqs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := r.answers
			if c.wantErr {
				got = r.errs
				if r.answers != 0 || r.firstErr != 401 {
					t.Errorf("answers %d, first error %d; want 0 and 401", r.answers, r.firstErr)
				}
			} else if r.errs != 0 {
				t.Errorf("%d error answers", r.errs)
			}
			if got == 0 || got > r.sent+uint64(cfg.window) || r.stray != 0 {
				t.Errorf("sent %d, answered %d, stray %d", r.sent, got, r.stray)
			}
			if r.elapsed < cfg.duration || r.firstPass <= 0 {
				t.Errorf("window %v, first pass %v", r.elapsed, r.firstPass)
			}
		})
	}
}

// A request built for the load is one a STUN decoder accepts, with the
// TR-111 attributes and an integrity check that passes with the device's
// password; its transaction id carries the run tag and the device index.
func TestClassicTR111RequestsDecode(t *testing.T) {
	devs := makeDevices("t-", 3, false)
	rs := classicTR111Requests(devs)
	for i, p := range rs.pkts {
		var m stun.Message
		if err := m.Decode(p); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !m.Classic || string(m.Username) != devs[i].user || !m.ConnectionRequestBinding || !m.HasIntegrity() {
			t.Fatalf("request %d: classic %v, username %q, integrity %v", i, m.Classic, m.Username, m.HasIntegrity())
		}
		if f, err := m.CheckIntegrity([]byte(devs[i].pass)); err != nil || f != stun.IntegrityRFC3489 {
			t.Fatalf("request %d: integrity %v, %v", i, f, err)
		}
		if binary.BigEndian.Uint32(p[rs.tagOff:]) != rs.tag || binary.BigEndian.Uint32(p[rs.idxOff:]) != uint32(i) {
			t.Fatalf("request %d: transaction id %x", i, p[4:20])
		}
	}
}

func TestProcCPU(t *testing.T) {
	user, sys, err := procCPU(os.Getpid())
	if err != nil || user < 0 || sys < 0 {
		t.Fatalf("procCPU: %v %v %v", user, sys, err)
	}
	if _, _, err := machineBusy(); err != nil {
		t.Fatal(err)
	}
}
