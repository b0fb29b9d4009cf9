package xmpp

import (
	"context"
	"encoding/xml"
	"fmt"
	"github.com/crrelay/crrelay/internal/metrictest"
	"strings"
	"testing"
	"time"
)

func TestConnectionRequestOutcomes(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.IQTimeout = 300 * time.Millisecond })
	for _, tc := range []struct {
		name   string
		answer answerFunc // nil: no session
		want   Result
	}{
		{"result", func(element) string { return "" }, Result{Outcome: Delivered}},
		{"not-authorized", func(e element) string {
			return fmt.Sprintf(`<iq type='error' id='%s' to='%s'><error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, e.attr("id"), e.attr("from"))
		}, Result{Outcome: AuthFailed, Condition: "not-authorized"}},
		{"misspelt not-autorized, cancel, echoed request", func(e element) string {
			// What a widespread agent sends: the request, password and
			// all, echoed inside the error.
			return fmt.Sprintf(`<iq type="error" id="%s" to="%s" from="%s"><connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0">%s</connectionRequest><error type="cancel"><not-autorized xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`,
				e.attr("id"), e.attr("from"), e.attr("to"), innerOf(e, "connectionRequest"))
		}, Result{Outcome: AuthFailed, Condition: "not-autorized"}},
		{"service-unavailable", func(e element) string {
			return fmt.Sprintf(`<iq type='error' id='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>not allowed</text></error></iq>`, e.attr("id"))
		}, Result{Outcome: Refused, Condition: "service-unavailable"}},
		{"other error", func(e element) string {
			return fmt.Sprintf(`<iq type='error' id='%s' to='%s'><error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, e.attr("id"), e.attr("from"))
		}, Result{Outcome: Error, Condition: "internal-server-error"}},
		{"no answer", func(element) string { return " " }, Result{Outcome: Timeout}},
		{"no session", nil, Result{Outcome: Offline}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := strings.NewReplacer(" ", "", ",", "").Replace(tc.name)
			to := user + "@" + testDomain + "/cwmp"
			got := make(chan element, 1)
			if tc.answer != nil {
				startCPE(t, tb, user, "cwmp", func(e element) string {
					got <- e
					return tc.answer(e)
				})
			}
			r := tb.ConnectionRequest(context.Background(), to, "cr-user", "cr&pass")
			if r.Outcome != tc.want.Outcome || r.Condition != tc.want.Condition {
				t.Fatalf("got %v %q, want %v %q", r.Outcome, r.Condition, tc.want.Outcome, tc.want.Condition)
			}
			if r.Outcome == Timeout && r.RTT < 300*time.Millisecond {
				t.Errorf("timed out after %v", r.RTT)
			}
			if tc.answer == nil {
				return
			}
			e := <-got
			if e.attr("from") != "crrelay@"+testDomain+"/relay" || e.attr("to") != to || e.attr("id") == "" {
				t.Errorf("request attributes %v", e.Attrs)
			}
			var cr struct {
				XMLName  xml.Name `xml:"urn:broadband-forum-org:cwmp:xmppConnReq-1-0 connectionRequest"`
				Username string   `xml:"username"`
				Password string   `xml:"password"`
			}
			if err := xml.Unmarshal([]byte(e.Inner), &cr); err != nil || cr.Username != "cr-user" || cr.Password != "cr&pass" {
				t.Errorf("payload %s: %+v %v", e.Inner, cr, err)
			}
		})
	}
	if n := metrictest.Value(t, tb.reg, "crrelay_xmpp_connection_requests_total", "outcome", "auth_failed"); n != 2 {
		t.Errorf("auth_failed counted %v", n)
	}
}

// innerOf returns the inner XML of e's child element called name.
func innerOf(e element, name string) string {
	var v struct {
		Children []element `xml:",any"`
	}
	xml.Unmarshal([]byte("<x>"+e.Inner+"</x>"), &v)
	for _, c := range v.Children {
		if c.XMLName.Local == name {
			return c.Inner
		}
	}
	return ""
}

func TestConnectionRequestContextAndBareJID(t *testing.T) {
	tb := startBroker(t, nil)
	startCPE(t, tb, "old", "a", func(element) string { return " " })
	startCPE(t, tb, "old", "b", func(element) string { return "" })
	// A bare JID reaches the most recent session (b answers).
	if r := tb.ConnectionRequest(context.Background(), "OLD@xmpp.test", "u", "p"); r.Outcome != Delivered {
		t.Errorf("bare JID: %+v", r)
	}
	// a never answers: the context's deadline applies before IQTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if r := tb.ConnectionRequest(ctx, "old@xmpp.test/a", "u", "p"); r.Outcome != Timeout || r.RTT > 2*time.Second {
		t.Errorf("deadline: %+v", r)
	}
	if r := tb.ConnectionRequest(context.Background(), "not a jid@", "u", "p"); r.Outcome != Error {
		t.Errorf("bad JID: %+v", r)
	}
}

// A session that ends while a request waits reports Offline at once.
func TestConnectionRequestSessionEnds(t *testing.T) {
	tb := startBroker(t, nil)
	started := make(chan *cpe, 1) // the CPE may be asked before startCPE returns
	started <- startCPE(t, tb, "leaver", "cwmp", func(element) string {
		(<-started).raw.Close()
		return " "
	})
	if r := tb.ConnectionRequest(context.Background(), "leaver@xmpp.test/cwmp", "u", "p"); r.Outcome != Offline {
		t.Errorf("got %+v", r)
	}
}
