package sim

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPipelineThroughProsody keeps requests in flight to a CPE that
// accepts them, one that refuses the credentials and a JID with no
// session, and checks every answer is reported with its target, that the
// pipeline refills its slots, and that it drains when ctx ends.
func TestPipelineThroughProsody(t *testing.T) {
	b := newXMPPTestbed(t)
	good, wakes := b.runCPE(XMPPCPEConfig{Name: "pipe-good", Password: "pw-good", CRUsername: "u", CRPassword: "p"})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() { // runCPE's channel holds 16 wakes
		for {
			select {
			case <-wakes:
			case <-stop:
				return
			}
		}
	}()
	bad, _ := b.runCPE(XMPPCPEConfig{Name: "pipe-bad", Password: "pw-bad", CRUsername: "u", CRPassword: "other"})
	targets := []PipelineTarget{
		{JID: good.ConnReqJID(), Username: "u", Password: "p"},
		{JID: bad.ConnReqJID(), Username: "u", Password: "p"},
		{JID: "nobody@" + testDomain + "/gone", Username: "u", Password: "p"},
	}
	var mu sync.Mutex
	counts := map[string]int{}
	sent := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := func(a PipelineAnswer) {
		mu.Lock()
		defer mu.Unlock()
		key := a.Target.JID + " " + a.Result.Type + " " + a.Result.Condition
		if a.TimedOut {
			key = a.Target.JID + " timeout"
		}
		counts[key]++
		if a.RTT <= 0 {
			t.Errorf("answer with RTT %v", a.RTT)
		}
		total := 0
		for _, n := range counts {
			total += n
		}
		if total == 60 {
			cancel()
		}
	}
	next := func() PipelineTarget {
		sent++ // one goroutine at a time, per the contract
		return targets[sent%len(targets)]
	}
	err := b.acs.Pipeline(ctx, PipelineConfig{InFlight: 6, Timeout: 5 * time.Second, Next: next, Done: done})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != sent {
		t.Errorf("%d requests sent, %d answers reported: %v", sent, total, counts)
	}
	want := map[string]string{
		good.ConnReqJID():                "result ",
		bad.ConnReqJID():                 "error not-authorized",
		"nobody@" + testDomain + "/gone": "error service-unavailable",
	}
	for key, n := range counts {
		jid, outcome, _ := strings.Cut(key, " ")
		if want[jid] != outcome {
			t.Errorf("%d × %s: %q, want %q", n, jid, outcome, want[jid])
		}
	}
	if len(counts) != 3 {
		t.Errorf("outcomes %v, want all three targets answered", counts)
	}
	if err := b.acs.Pipeline(context.Background(), PipelineConfig{}); err != ErrPipelineConfig {
		t.Errorf("empty config: %v", err)
	}
}

// TestPipelineTimeoutAndLateAnswer checks, without a server, that a
// request with no answer is reported timed out and replaced, and that its
// late answer is not taken for its successor's.
func TestPipelineTimeoutAndLateAnswer(t *testing.T) {
	a := &XMPPACS{wsig: make(chan struct{}, 1), done: make(chan struct{})}
	var got []PipelineAnswer
	n := 0
	p := &pipeline{a: a, slots: make([]pipeSlot, 1), drained: make(chan struct{}), cfg: PipelineConfig{
		InFlight: 1, Timeout: time.Second,
		Next: func() PipelineTarget { n++; return PipelineTarget{JID: "cpe" + string(rune('0'+n)) + "@d/r"} },
		Done: func(x PipelineAnswer) { got = append(got, x) },
	}}
	p.mu.Lock()
	p.sendLocked(0)
	p.mu.Unlock()
	if !strings.Contains(string(a.wbuf), "id='p0.1' to='cpe1@d/r'") {
		t.Fatalf("queued %s", a.wbuf)
	}
	p.expire(time.Now().Add(2 * time.Second))
	if len(got) != 1 || !got[0].TimedOut || got[0].Target.JID != "cpe1@d/r" {
		t.Fatalf("after the timeout: %+v", got)
	}
	if !strings.Contains(string(a.wbuf), "id='p0.2' to='cpe2@d/r'") {
		t.Fatalf("no replacement queued: %s", a.wbuf)
	}
	result, err := parseElement([]byte("<iq type='result' id='p0.1' from='cpe1@d/r'/>"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.answer("p0.1", result, "result")
	if len(got) != 1 {
		t.Fatalf("late answer reported: %+v", got[1:])
	}
	p.answer("p0.2", result, "result")
	if len(got) != 2 || got[1].TimedOut || got[1].Target.JID != "cpe2@d/r" || !got[1].Result.OK() {
		t.Fatalf("answer to the replacement: %+v", got)
	}
	for _, id := range []string{"", "p", "p0", "p.1", "p-.1", "p0.", "q0.1", "p0.1.2"} {
		if _, _, ok := parsePipeID(id); ok {
			t.Errorf("parsePipeID(%q) accepted", id)
		}
	}
}
