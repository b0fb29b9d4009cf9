package events

import (
	"encoding/json"
	"time"
)

// Event types. A type is "family.name"; a Filter can select a whole
// family ("xmpp" or "xmpp.").
const (
	BindingNew       = "binding.new"       // a device's first UDP binding
	BindingChanged   = "binding.changed"   // its public (mapped) address moved
	BindingExpired   = "binding.expired"   // no keepalive for too long
	XMPPOnline       = "xmpp.online"       // XMPP session established
	XMPPOffline      = "xmpp.offline"      // XMPP session ended
	WakeResult       = "wake.result"       // a connection request was sent (or failed)
	WakeConfirmed    = "wake.confirmed"    // the CPE's Inform confirmed a wake
	CampaignProgress = "campaign.progress" // a campaign's counters moved
	CampaignDone     = "campaign.done"     // a campaign finished
)

// typeOther indexes per-type tables for a Type that is not one of the
// constants: Publish accepts any type, but metrics and fast filter
// matching know only these.
const typeOther = len(knownTypes)

// knownTypes lists the event types in typeIndex order.
var knownTypes = [...]string{
	BindingNew, BindingChanged, BindingExpired,
	XMPPOnline, XMPPOffline,
	WakeResult, WakeConfirmed,
	CampaignProgress, CampaignDone,
}

// families are the prefixes of the known types.
var families = [...]string{"binding", "xmpp", "wake", "campaign"}

// typeIndex returns t's index in knownTypes, or typeOther. A switch
// compiles to a few comparisons and costs Publish no map lookup.
func typeIndex(t string) int {
	switch t {
	case BindingNew:
		return 0
	case BindingChanged:
		return 1
	case BindingExpired:
		return 2
	case XMPPOnline:
		return 3
	case XMPPOffline:
		return 4
	case WakeResult:
		return 5
	case WakeConfirmed:
		return 6
	case CampaignProgress:
		return 7
	case CampaignDone:
		return 8
	}
	return typeOther
}

// Event is one thing that happened in the appliance. Its JSON form is what
// SSE clients and webhooks receive.
type Event struct {
	// ID is assigned by Publish: 1 for the first event of the process,
	// then strictly increasing. IDs start again at 1 when the appliance
	// restarts.
	ID uint64 `json:"id"`
	// Type is one of the type constants.
	Type string `json:"type"`
	// At is when it happened, in UTC; Publish sets it to the current time
	// if it is zero.
	At time.Time `json:"at"`
	// Device is the device id the event is about, if any.
	Device string `json:"device,omitempty"`
	// Campaign is the campaign id the event belongs to, if any.
	Campaign string `json:"campaign,omitempty"`
	// Data is a type-specific JSON object. Publish does not check it;
	// an event whose Data is not valid JSON is delivered with Data
	// replaced by {"error":"invalid event data"}.
	Data json.RawMessage `json:"data,omitempty"`
}

// invalidData replaces Data that does not encode.
var invalidData = json.RawMessage(`{"error":"invalid event data"}`)

// New returns an event of type typ about device with data marshalled to
// JSON as its Data. A nil data gives no Data. New never panics: if data
// cannot be marshalled, Data is {"error":"<the marshalling error>"}, so the
// consumer sees that something happened and why its details are missing.
func New(typ, device string, data any) Event {
	e := Event{Type: typ, Device: device}
	if data == nil {
		return e
	}
	b, err := json.Marshal(data)
	if err != nil {
		b, _ = json.Marshal(struct {
			Error string `json:"error"`
		}{err.Error()})
	}
	e.Data = b
	return e
}

// encode returns e's JSON on one line (encoding/json compacts Data).
func encode(e *Event) []byte {
	b, err := json.Marshal(e)
	if err != nil {
		c := *e
		c.Data = invalidData
		b, _ = json.Marshal(&c)
	}
	return b
}
