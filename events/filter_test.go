package events

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		query   string
		want    Filter
		wantErr error
	}{
		{"empty", "", Filter{}, nil},
		{"other parameters ignored", "last_event_id=5&token=x", Filter{}, nil},
		{"one type", "type=wake.result", Filter{Types: []string{WakeResult}}, nil},
		{"comma-separated", "type=wake.result,xmpp.online", Filter{Types: []string{WakeResult, XMPPOnline}}, nil},
		{"repeated", "type=wake.result&type=xmpp.online", Filter{Types: []string{WakeResult, XMPPOnline}}, nil},
		{"duplicates folded", "type=xmpp&type=xmpp", Filter{Types: []string{"xmpp"}}, nil},
		{"family", "type=xmpp", Filter{Types: []string{"xmpp"}}, nil},
		{"family with dot", "type=binding.", Filter{Types: []string{"binding."}}, nil},
		{"spaces and empty items", "type=%20wake.result%20,,", Filter{Types: []string{WakeResult}}, nil},
		{"devices", "device=a,b&device=c", Filter{Devices: []string{"a", "b", "c"}}, nil},
		{"campaign", "campaign=c1", Filter{Campaign: "c1"}, nil},
		{"all", "type=campaign&device=d&campaign=c1", Filter{Types: []string{"campaign"}, Devices: []string{"d"}, Campaign: "c1"}, nil},
		{"unknown type", "type=wake.sent", Filter{}, ErrBadFilter},
		{"unknown family", "type=stun", Filter{}, ErrBadFilter},
		{"wildcard not accepted", "type=xmpp.*", Filter{}, ErrBadFilter},
		{"prefix is not a family", "type=wak", Filter{}, ErrBadFilter},
		{"case matters", "type=WAKE.RESULT", Filter{}, ErrBadFilter},
		{"two campaigns", "campaign=a&campaign=b", Filter{}, ErrBadFilter},
		{"too many devices", "device=" + strings.Repeat("d,", maxFilterDevices) + "x", Filter{}, ErrBadFilter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseFilter(q)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseFilter = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestParseFilterMessage(t *testing.T) {
	_, err := ParseFilter(url.Values{"type": {"wake.sent"}})
	// The message names the culprit and what would have been accepted.
	for _, want := range []string{`"wake.sent"`, WakeResult, CampaignDone, "xmpp"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestMatch(t *testing.T) {
	wake := Event{Type: WakeResult, Device: "d1"}
	online := Event{Type: XMPPOnline, Device: "d2"}
	progress := Event{Type: CampaignProgress, Campaign: "c1"}
	custom := Event{Type: "sim.tick", Device: "d1"}
	for _, tc := range []struct {
		name string
		f    Filter
		e    Event
		want bool
	}{
		{"empty matches all", Filter{}, wake, true},
		{"empty matches unknown types", Filter{}, custom, true},
		{"exact type", Filter{Types: []string{WakeResult}}, wake, true},
		{"other type", Filter{Types: []string{WakeResult}}, online, false},
		{"family", Filter{Types: []string{"xmpp"}}, online, true},
		{"family with dot", Filter{Types: []string{"xmpp."}}, online, true},
		{"family of another", Filter{Types: []string{"xmpp"}}, wake, false},
		{"family is not a bare prefix", Filter{Types: []string{"wak"}}, wake, false},
		{"one of several types", Filter{Types: []string{"binding", WakeResult}}, wake, true},
		{"unknown type by family", Filter{Types: []string{"sim"}}, custom, true},
		{"unknown type exact", Filter{Types: []string{"sim.tick"}}, custom, true},
		{"unknown type filtered out", Filter{Types: []string{"wake"}}, custom, false},
		{"device", Filter{Devices: []string{"d0", "d1"}}, wake, true},
		{"other device", Filter{Devices: []string{"d0", "d2"}}, wake, false},
		{"device filter skips deviceless", Filter{Devices: []string{"d1"}}, progress, false},
		{"many devices (set)", Filter{Devices: strings.Split("a,b,c,d,e,f,g,h,i,j,d1", ",")}, wake, true},
		{"many devices, none", Filter{Devices: strings.Split("a,b,c,d,e,f,g,h,i,j", ",")}, wake, false},
		{"campaign", Filter{Campaign: "c1"}, progress, true},
		{"other campaign", Filter{Campaign: "c2"}, progress, false},
		{"campaign filter skips campaignless", Filter{Campaign: "c1"}, wake, false},
		{"all fields AND", Filter{Types: []string{"campaign"}, Campaign: "c1"}, progress, true},
		{"AND fails on one field", Filter{Types: []string{"campaign"}, Devices: []string{"d1"}, Campaign: "c1"}, progress, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := compile(tc.f).match(&tc.e, typeIndex(tc.e.Type)); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTypeIndex(t *testing.T) {
	for i, typ := range knownTypes {
		if got := typeIndex(typ); got != i {
			t.Errorf("typeIndex(%q) = %d, want %d", typ, got, i)
		}
		if !strings.Contains(typ, ".") || !knownTypeOrFamily(strings.Split(typ, ".")[0]) {
			t.Errorf("type %q is not in a known family", typ)
		}
	}
	if got := typeIndex("wake"); got != typeOther {
		t.Errorf("typeIndex(wake) = %d, want typeOther", got)
	}
}

// filterQuery encodes f as ParseFilter reads it.
func filterQuery(f Filter) url.Values {
	q := url.Values{}
	if len(f.Types) > 0 {
		q.Set("type", strings.Join(f.Types, ","))
	}
	for _, d := range f.Devices {
		q.Add("device", d)
	}
	if f.Campaign != "" {
		q.Set("campaign", f.Campaign)
	}
	return q
}

// FuzzParseFilter: whatever query ParseFilter accepts, its result encodes
// back to a query that parses to the same filter, holds only known types,
// and no empty, padded or comma-holding items.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "type=xmpp", "type=wake.result,xmpp.&device=a,b&campaign=c",
		"type=nope", "device=%20,x", "campaign=a&campaign=b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		got, err := ParseFilter(q)
		if err != nil {
			if !errors.Is(err, ErrBadFilter) {
				t.Fatalf("error %v does not wrap ErrBadFilter", err)
			}
			return
		}
		for _, typ := range got.Types {
			if !knownTypeOrFamily(typ) {
				t.Fatalf("accepted unknown type %q", typ)
			}
		}
		for _, d := range got.Devices {
			if d == "" || d != strings.TrimSpace(d) || strings.Contains(d, ",") {
				t.Fatalf("device item %q", d)
			}
		}
		again, err := ParseFilter(filterQuery(got))
		if err != nil {
			t.Fatalf("re-parsing %v: %v", filterQuery(got), err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip: %#v became %#v", got, again)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	m := compile(Filter{Types: []string{"wake", XMPPOnline}, Devices: []string{"d1", "d2", "d3"}})
	e := Event{Type: WakeResult, Device: "d3"}
	ti := typeIndex(e.Type)
	b.ReportAllocs()
	for b.Loop() {
		if !m.match(&e, ti) {
			b.Fatal("no match")
		}
	}
}
