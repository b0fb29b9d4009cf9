package wake

import (
	"context"

	"github.com/crrelay/crrelay/httpcr"
	"github.com/crrelay/crrelay/registry"
)

// HTTP adapts the httpcr client to the wake path: a GET with Digest on the
// device's ConnectionRequestURL.
type HTTP struct {
	Client *httpcr.Client
}

// Usable reports whether the device has a ConnectionRequestURL.
func (h HTTP) Usable(d registry.Device) (bool, string) {
	if d.ConnectionRequestURL == "" {
		return false, "no connection_request_url registered"
	}
	return true, ""
}

// Wake sends the HTTP connection request.
func (h HTTP) Wake(ctx context.Context, d registry.Device) Attempt {
	r := h.Client.Do(ctx, httpcr.Request{
		URL:        d.ConnectionRequestURL,
		Username:   d.Username,
		Password:   d.Password,
		AllowBasic: d.AllowBasic,
	})
	return Attempt{
		Transport:  registry.TransportHTTP,
		Status:     Status(r.Outcome), // httpcr's outcomes are these status words
		Detail:     r.Detail,
		HTTPStatus: r.HTTPStatus,
		DurationMS: ms(r.Duration),
	}
}
