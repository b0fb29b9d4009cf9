package registry

import (
	"time"
)

// Transport names a way to wake a CPE. The registry stores the device's
// preferred order; it knows nothing of how each transport works.
type Transport string

// The transports a device may list, in any order.
const (
	TransportXMPP Transport = "xmpp" // TR-069 Annex K
	TransportUDP  Transport = "udp"  // TR-069 Annex G (TR-111)
	TransportHTTP Transport = "http" // ConnectionRequestURL with Digest
)

// Valid reports whether t is one of the known transports.
func (t Transport) Valid() bool {
	switch t {
	case TransportXMPP, TransportUDP, TransportHTTP:
		return true
	}
	return false
}

// MaxIDLen bounds a device id: the ACS's id, any printable string.
const MaxIDLen = 256

// Device is what the ACS registers for one CPE. Password, STUNPassword and
// XMPPPassword are secrets: they are sealed at rest and must never leave the
// process through the API or a log line.
type Device struct {
	ID                   string      // the ACS's device id
	ConnectionRequestURL string      // Device.ManagementServer.ConnectionRequestURL
	Username             string      // ConnectionRequestUsername
	Password             string      // ConnectionRequestPassword (secret)
	AllowBasic           bool        // the CPE only does Basic: allow it for this device
	STUNUsername         string      // Device.ManagementServer.STUNUsername
	STUNPassword         string      // Device.ManagementServer.STUNPassword (secret)
	UDPAddress           string      // UDPConnectionRequestAddress as the CPE reports it, host:port
	XMPPJID              string      // ConnReqJabberID (bare or full)
	XMPPPassword         string      // the CPE's account password on the broker (secret)
	Transports           []Transport // preferred order; empty = the appliance default
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// WakeRecord is the outcome of one connection request, kept per device so
// the ACS can see the last few results.
type WakeRecord struct {
	ID         string    `json:"id,omitempty"` // the wake's id, as the API returned it
	At         time.Time `json:"at"`
	Status     string    `json:"status"`
	Transport  string    `json:"transport,omitempty"`
	DurationMS float64   `json:"duration_ms"`
	Detail     string    `json:"detail,omitempty"`
	// ConfirmedAt is when the ACS reported the CPE's Inform with
	// "6 CONNECTION REQUEST" for this wake; ConfirmMS the time from the
	// wake to then.
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
	ConfirmMS   float64    `json:"confirm_ms,omitempty"`
}

// MaxWakeRecords is how many recent wake results the registry keeps per device.
const MaxWakeRecords = 10

// Live is the state the wake path writes about a device while the
// appliance runs: recent wake results today; the XMPP session (Annex K)
// joins it as that transport lands. It is kept in memory and written to the
// store in batches, so frequent updates do not cost a disk write each. The
// UDP binding (Annex G) is stored in the same record but kept apart in
// memory, since it changes at every STUN keepalive: see Binding.
type Live struct {
	Wakes []WakeRecord `json:"wakes,omitempty"` // newest last, at most MaxWakeRecords
}
