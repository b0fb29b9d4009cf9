package api

import (
	"time"

	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
)

// Device is a device as the API shows it: everything but the secrets, of
// which only their presence is told.
type Device struct {
	ID                   string               `json:"id"`
	ConnectionRequestURL string               `json:"connection_request_url,omitempty"`
	Username             string               `json:"username,omitempty"`
	PasswordSet          bool                 `json:"password_set"`
	AllowBasic           bool                 `json:"allow_basic"`
	STUNUsername         string               `json:"stun_username,omitempty"`
	STUNPasswordSet      bool                 `json:"stun_password_set"`
	UDPAddress           string               `json:"udp_address,omitempty"`
	XMPPJID              string               `json:"xmpp_jid,omitempty"`
	XMPPPasswordSet      bool                 `json:"xmpp_password_set"`
	Transports           []registry.Transport `json:"transports"`
	CreatedAt            time.Time            `json:"created_at"`
	UpdatedAt            time.Time            `json:"updated_at"`
	State                *State               `json:"state,omitempty"`
}

// State is the live state of a device, one section per transport plus the
// last wake results (newest last).
type State struct {
	HTTP  TransportState        `json:"http"`
	UDP   UDPState              `json:"udp"`
	XMPP  XMPPState             `json:"xmpp"`
	Wakes []registry.WakeRecord `json:"wakes"`
}

// TransportState tells whether a transport runs on this appliance, whether
// it could reach the device now (and if not, why), and its last result.
type TransportState struct {
	Enabled bool                 `json:"enabled"`
	Usable  bool                 `json:"usable"`
	Reason  string               `json:"reason,omitempty"`
	Last    *registry.WakeRecord `json:"last,omitempty"`
}

// UDPState is the UDP (Annex G) section: the transport state plus the
// binding the STUN server learned, when there is one.
type UDPState struct {
	Enabled bool                 `json:"enabled"`
	Usable  bool                 `json:"usable"`
	Reason  string               `json:"reason,omitempty"`
	Last    *registry.WakeRecord `json:"last,omitempty"`
	Binding *Binding             `json:"binding,omitempty"`
}

// XMPPState is the XMPP (Annex K) section: the transport state plus the
// CPE's session on the broker, current or last, when it had one since the
// relay started.
type XMPPState struct {
	Enabled bool                 `json:"enabled"`
	Usable  bool                 `json:"usable"`
	Reason  string               `json:"reason,omitempty"`
	Last    *registry.WakeRecord `json:"last,omitempty"`
	Session *XMPPSession         `json:"session,omitempty"`
}

// XMPPSession is a CPE's session on the broker.
type XMPPSession struct {
	Online    bool       `json:"online"`
	FullJID   string     `json:"full_jid"`
	Remote    string     `json:"remote,omitempty"`
	TLS       bool       `json:"tls"`
	Since     time.Time  `json:"since"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`
}

func sessionView(s registry.XMPPSession) *XMPPSession {
	v := &XMPPSession{Online: s.Online, FullJID: s.FullJID, Remote: s.Remote, TLS: s.TLS, Since: s.Since, EndReason: s.EndReason}
	if !s.EndedAt.IsZero() {
		e := s.EndedAt
		v.EndedAt = &e
	}
	return v
}

// Binding is a CPE's NAT binding as the STUN server learned it.
type Binding struct {
	Mapped         string     `json:"mapped"`                    // public ip:port, where UDP connection requests go
	Local          string     `json:"local"`                     // relay socket they leave from
	PreviousMapped string     `json:"previous_mapped,omitempty"` // before the last change
	FirstSeen      time.Time  `json:"first_seen"`
	LastSeen       time.Time  `json:"last_seen"`
	KeepaliveS     float64    `json:"keepalive_s"` // observed interval between binding requests, 0 until known
	Changes        int        `json:"changes"`
	LastChange     *time.Time `json:"last_change,omitempty"`
	// NATTimeoutS estimates the subscriber's NAT UDP timeout from a change
	// after a silent gap; absent while unknown.
	NATTimeoutS float64 `json:"nat_timeout_s,omitempty"`
	// RecommendedKeepaliveS is a STUNMaximumKeepAlivePeriod to set on the CPE.
	RecommendedKeepaliveS int `json:"recommended_keepalive_s"`
	// Restored: loaded from disk at start-up, no request seen since.
	Restored bool `json:"restored"`
}

func bindingView(b registry.UDPBinding) *Binding {
	v := &Binding{
		Mapped: b.Mapped.String(), Local: b.Local.String(), FirstSeen: b.FirstSeen, LastSeen: b.LastSeen,
		KeepaliveS: b.Keepalive.Seconds(), Changes: b.Changes, NATTimeoutS: b.NATTimeout.Seconds(),
		RecommendedKeepaliveS: int(b.RecommendedKeepalive().Seconds()), Restored: b.Restored,
	}
	if b.PrevMapped.IsValid() {
		v.PreviousMapped = b.PrevMapped.String()
	}
	if !b.LastChange.IsZero() {
		lc := b.LastChange
		v.LastChange = &lc
	}
	return v
}

// DeviceList is one page of devices. NextCursor is empty on the last page.
type DeviceList struct {
	Devices    []Device `json:"devices"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// WakeRequest is the optional body of a connection request.
type WakeRequest struct {
	Transports []registry.Transport `json:"transports,omitempty"`
	Strategy   wake.Strategy        `json:"strategy,omitempty"` // sequential (default) or parallel
	Wait       wake.Wait            `json:"wait,omitempty"`     // delivered (default) or confirmed
	TimeoutMS  int64                `json:"timeout_ms,omitempty"`
}

// wakeOptions are the options a single wake and a batch share.
type wakeOptions struct {
	Transports []registry.Transport
	Strategy   wake.Strategy
	Wait       wake.Wait
	TimeoutMS  int64
}

func (r WakeRequest) options() wakeOptions {
	return wakeOptions{r.Transports, r.Strategy, r.Wait, r.TimeoutMS}
}

// InformRequest is the body of POST /v1/devices/{id}/inform: the ACS
// reports that the CPE's Inform arrived, with its event codes.
type InformRequest struct {
	Events []string   `json:"events"`
	At     *time.Time `json:"at,omitempty"` // when the Inform arrived; absent = now
}

// InformResult answers an inform.
type InformResult = wake.Confirmation

// WakeResult is the answer to a connection request.
type WakeResult = wake.Result

func deviceView(d registry.Device) Device {
	ts := d.Transports
	if ts == nil {
		ts = []registry.Transport{}
	}
	return Device{
		ID:                   d.ID,
		ConnectionRequestURL: d.ConnectionRequestURL,
		Username:             d.Username,
		PasswordSet:          d.Password != "",
		AllowBasic:           d.AllowBasic,
		STUNUsername:         d.STUNUsername,
		STUNPasswordSet:      d.STUNPassword != "",
		UDPAddress:           d.UDPAddress,
		XMPPJID:              d.XMPPJID,
		XMPPPasswordSet:      d.XMPPPassword != "",
		Transports:           ts,
		CreatedAt:            d.CreatedAt,
		UpdatedAt:            d.UpdatedAt,
	}
}
