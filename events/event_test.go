package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     any
		wantData string
	}{
		{"nil", nil, ""},
		{"struct", struct {
			Transport string `json:"transport"`
			OK        bool   `json:"ok"`
		}{"udp", true}, `{"transport":"udp","ok":true}`},
		{"map", map[string]int{"sent": 3}, `{"sent":3}`},
		{"raw JSON is compacted", json.RawMessage("{\n  \"a\": 1\n}"), `{"a":1}`},
		{"unmarshallable", map[string]any{"c": make(chan int)}, `{"error":"json: unsupported type: chan int"}`},
		{"invalid raw JSON", json.RawMessage(`{"a":`), `{"error":"json: error calling MarshalJSON for type json.RawMessage: unexpected end of JSON input"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := New(WakeResult, "dev-1", tc.data)
			if e.Type != WakeResult || e.Device != "dev-1" || e.ID != 0 || !e.At.IsZero() {
				t.Errorf("New = %+v", e)
			}
			if string(e.Data) != tc.wantData {
				t.Errorf("Data = %s, want %s", e.Data, tc.wantData)
			}
			if e.Data != nil && !json.Valid(e.Data) {
				t.Errorf("Data %s is not valid JSON", e.Data)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, tc := range []struct {
		name string
		e    Event
		want string
	}{
		{"minimal", Event{ID: 1, Type: XMPPOnline, At: at},
			`{"id":1,"type":"xmpp.online","at":"2025-01-02T03:04:05.000006Z"}`},
		{"full", Event{ID: 7, Type: CampaignDone, At: at, Device: "d", Campaign: "c", Data: json.RawMessage(`{"done":2}`)},
			`{"id":7,"type":"campaign.done","at":"2025-01-02T03:04:05.000006Z","device":"d","campaign":"c","data":{"done":2}}`},
		{"multi-line data on one line", Event{ID: 2, Type: WakeResult, At: at, Data: json.RawMessage("{\n\"a\":\n[1,\n2]}")},
			`{"id":2,"type":"wake.result","at":"2025-01-02T03:04:05.000006Z","data":{"a":[1,2]}}`},
		{"invalid data replaced", Event{ID: 3, Type: WakeResult, At: at, Data: json.RawMessage(`{"a"`)},
			`{"id":3,"type":"wake.result","at":"2025-01-02T03:04:05.000006Z","data":{"error":"invalid event data"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := encode(&tc.e)
			if string(got) != tc.want {
				t.Errorf("encode =\n%s\nwant\n%s", got, tc.want)
			}
			if bytes.ContainsAny(got, "\r\n") {
				t.Errorf("encoding has a line break: %q", got)
			}
		})
	}
}
