package sim

import (
	"context"

	"github.com/crrelay/crrelay/apiclient"
)

// APIRegistrar registers simulated CPEs with an appliance through its
// public API, as an ACS would: PUT /v1/devices/{id} with what each kind of
// CPE needs. It is a Registrar, an STUNRegistrar and an XMPPRegistrar.
type APIRegistrar struct{ Client *apiclient.Client }

// PutDevice registers an HTTP CPE: its ConnectionRequestURL and
// credentials, transport http, and allow_basic for a Basic-only CPE.
func (r APIRegistrar) PutDevice(ctx context.Context, d Device) error {
	in := apiclient.DeviceInput{
		ConnectionRequestURL: &d.ConnectionRequestURL,
		Username:             &d.Username,
		Password:             &d.Password,
		Transports:           []string{"http"},
	}
	if d.AllowBasic {
		in.AllowBasic = &d.AllowBasic
	}
	_, err := r.Client.PutDevice(ctx, d.ID, in)
	return err
}

// PutSTUNDevice registers a TR-111 CPE: the STUN credentials its Binding
// Requests are signed with and the connection-request ones that sign UDP
// connection requests.
func (r APIRegistrar) PutSTUNDevice(ctx context.Context, d STUNDevice) error {
	_, err := r.Client.PutDevice(ctx, d.ID, apiclient.DeviceInput{
		STUNUsername: &d.STUNUsername, STUNPassword: &d.STUNPassword,
		Username: &d.Username, Password: &d.Password, Transports: d.Transports,
	})
	return err
}

// PutXMPPDevice registers an Annex K CPE: the full JID it binds (its
// ConnReqJabberID), its account password on the broker and its
// connection-request credentials.
func (r APIRegistrar) PutXMPPDevice(ctx context.Context, d XMPPDevice) error {
	_, err := r.Client.PutDevice(ctx, d.ID, apiclient.DeviceInput{
		XMPPJID: &d.ConnReqJID, XMPPPassword: &d.XMPPPassword,
		Username: &d.Username, Password: &d.Password, Transports: d.Transports,
	})
	return err
}
