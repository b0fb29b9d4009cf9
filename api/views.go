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
	UDP   TransportState        `json:"udp"`
	XMPP  TransportState        `json:"xmpp"`
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

// DeviceList is one page of devices. NextCursor is empty on the last page.
type DeviceList struct {
	Devices    []Device `json:"devices"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// WakeRequest is the optional body of a connection request.
type WakeRequest struct {
	Transports []registry.Transport `json:"transports,omitempty"`
	TimeoutMS  int64                `json:"timeout_ms,omitempty"`
}

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
