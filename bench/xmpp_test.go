package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestXMPPLoadProsody runs the XMPP load tool at tiny scale against
// Prosody, installing it when missing (as root). CRRELAY_BENCH_XMPP_SESSIONS
// scales it up to a real measurement (20000, say) and prints the rows:
//
//	CRRELAY_BENCH_XMPP_SESSIONS=20000 go test -run TestXMPPLoadProsody -v -timeout 20m ./bench/
func TestXMPPLoadProsody(t *testing.T) {
	path, err := ensureProsody()
	if err != nil {
		t.Skipf("Prosody unavailable: %v", err)
	}
	o := defaultXMPPOptions()
	o.sessions, o.loginConc, o.settle = 40, 8, 50*time.Millisecond
	o.iqDuration, o.iqConc, o.iqTimeout = 300*time.Millisecond, 8, 2*time.Second
	if s := os.Getenv("CRRELAY_BENCH_XMPP_IQ_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		o.iqDuration = time.Duration(n) * time.Second
	}
	full := false
	if s := os.Getenv("CRRELAY_BENCH_XMPP_SESSIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		o = defaultXMPPOptions()
		o.sessions, full = n, true
		for _, kv := range []struct {
			env string
			v   *int
		}{{"CRRELAY_BENCH_XMPP_LOGIN_CONC", &o.loginConc}, {"CRRELAY_BENCH_XMPP_IQ_CONC", &o.iqConc}, {"CRRELAY_BENCH_XMPP_ACS", &o.acsConns}} {
			if s := os.Getenv(kv.env); s != "" {
				if *kv.v, err = strconv.Atoi(s); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	_ = path
	ctx := context.Background()
	s := prosodyStarter("bench.example")
	target, stop, err := s.start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	r, err := benchXMPP(ctx, target, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.online != r.opts.sessions || r.loginFails != 0 {
		t.Errorf("%d of %d online, %d failed attempts: %s", r.online, r.opts.sessions, r.loginFails, r.loginFirstE)
	}
	if r.iqOK == 0 || r.iqFailed != 0 || r.drops != 0 {
		t.Errorf("%d IQs answered, %d failed %v, %d drops", r.iqOK, r.iqFailed, r.iqOutcomes, r.drops)
	}
	if r.rssBefore <= 0 || r.rssAfter <= 0 || !r.login.known || r.login.tool <= 0 {
		t.Errorf("RSS %d → %d, login CPU %+v", r.rssBefore, r.rssAfter, r.login)
	}
	rows := xmppRows(r, false)
	if len(rows) != 4 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, row := range rows {
		if row.name == "" || row.result == "" || strings.Contains(row.result, "unavailable") {
			t.Errorf("row %+v", row)
		}
		if full || testing.Verbose() {
			fmt.Printf("%s\t%s\t%s\t%s\n", row.name, row.result, row.goal, row.note)
		}
	}
}

func TestSourceDialerSpreads(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := sourceDialer(ln.Addr().String(), 3)
	seen := map[string]bool{}
	for range 6 {
		c, err := dial(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		host, _, _ := net.SplitHostPort(c.LocalAddr().String())
		seen[host] = true
		c.Close()
	}
	if len(seen) != 3 || !seen["127.0.0.1"] || !seen["127.0.0.3"] {
		t.Errorf("source addresses %v", seen)
	}
}

func TestVMRSS(t *testing.T) {
	if rss := vmRSS(os.Getpid()); rss < 1<<20 {
		t.Errorf("own RSS %d", rss)
	}
	if vmRSS(0) != 0 {
		t.Error("RSS of pid 0")
	}
}

func TestProsodyEncode(t *testing.T) {
	for in, want := range map[string]string{"example.net": "example%2enet", "bench-000001": "bench%2d000001", "acs": "acs"} {
		if got := prosodyEncode(in); got != want {
			t.Errorf("%q: %q", in, got)
		}
	}
}
