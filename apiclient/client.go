// Package apiclient is a Go client of the crrelay ACS API, used by the CLI
// and by the CPE simulator to register itself. It speaks only the public
// API: nothing here reaches into the appliance.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/crrelay/crrelay/api"
)

// Error is an error answered by the API.
type Error struct {
	Status int
	api.ErrorDetail
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (HTTP %d, %s, field %s)", e.Message, e.Status, e.Code, e.Field)
	}
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

var ErrNoAddress = errors.New("apiclient: no API address")

// Client calls the API at BaseURL with a bearer token.
type Client struct {
	BaseURL string       // e.g. http://127.0.0.1:8547
	Token   string       // bearer token
	HTTP    *http.Client // nil = http.DefaultClient
}

// DeviceInput is the body of PUT and PATCH; nil fields are left out.
type DeviceInput struct {
	ConnectionRequestURL *string  `json:"connection_request_url,omitempty"`
	Username             *string  `json:"username,omitempty"`
	Password             *string  `json:"password,omitempty"`
	AllowBasic           *bool    `json:"allow_basic,omitempty"`
	STUNUsername         *string  `json:"stun_username,omitempty"`
	STUNPassword         *string  `json:"stun_password,omitempty"`
	UDPAddress           *string  `json:"udp_address,omitempty"`
	XMPPJID              *string  `json:"xmpp_jid,omitempty"`
	XMPPPassword         *string  `json:"xmpp_password,omitempty"`
	Transports           []string `json:"transports,omitempty"`
}

// PutDevice creates or replaces a device.
func (c *Client) PutDevice(ctx context.Context, id string, in DeviceInput) (api.Device, error) {
	var out api.Device
	err := c.do(ctx, http.MethodPut, devicePath(id), in, &out)
	return out, err
}

// PatchDevice changes the given fields of a device.
func (c *Client) PatchDevice(ctx context.Context, id string, in DeviceInput) (api.Device, error) {
	var out api.Device
	err := c.do(ctx, http.MethodPatch, devicePath(id), in, &out)
	return out, err
}

// GetDevice reads a device and its live state.
func (c *Client) GetDevice(ctx context.Context, id string) (api.Device, error) {
	var out api.Device
	err := c.do(ctx, http.MethodGet, devicePath(id), nil, &out)
	return out, err
}

// DeleteDevice forgets a device.
func (c *Client) DeleteDevice(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, devicePath(id), nil, nil)
}

// ListDevices reads one page of devices.
func (c *Client) ListDevices(ctx context.Context, cursor string, limit int) (api.DeviceList, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := "/v1/devices"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out api.DeviceList
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// Wake asks for a connection request.
func (c *Client) Wake(ctx context.Context, id string, req api.WakeRequest) (api.WakeResult, error) {
	var out api.WakeResult
	err := c.do(ctx, http.MethodPost, devicePath(id)+"/connection-request", req, &out)
	return out, err
}

// Inform reports a CPE's Inform, confirming its pending or latest wake.
func (c *Client) Inform(ctx context.Context, id string, req api.InformRequest) (api.InformResult, error) {
	var out api.InformResult
	err := c.do(ctx, http.MethodPost, devicePath(id)+"/inform", req, &out)
	return out, err
}

func devicePath(id string) string { return "/v1/devices/" + url.PathEscape(id) }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if c.BaseURL == "" {
		return ErrNoAddress
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("apiclient: encode: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("apiclient: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("apiclient: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("apiclient: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			return &Error{Status: resp.StatusCode, ErrorDetail: eb.Error}
		}
		return &Error{Status: resp.StatusCode, ErrorDetail: api.ErrorDetail{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(raw))}}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("apiclient: decode answer: %w", err)
		}
	}
	return nil
}

// WakeBatch wakes many devices in one call.
func (c *Client) WakeBatch(ctx context.Context, req api.BatchWakeRequest) (api.BatchWakeResult, error) {
	var out api.BatchWakeResult
	err := c.do(ctx, http.MethodPost, "/v1/connection-requests", req, &out)
	return out, err
}

// StartCampaign starts a bulk wake.
func (c *Client) StartCampaign(ctx context.Context, spec api.CampaignSpec) (api.Campaign, error) {
	var out api.Campaign
	err := c.do(ctx, http.MethodPost, "/v1/campaigns", spec, &out)
	return out, err
}

// GetCampaign returns a campaign and its progress.
func (c *Client) GetCampaign(ctx context.Context, id string) (api.Campaign, error) {
	var out api.Campaign
	err := c.do(ctx, http.MethodGet, "/v1/campaigns/"+url.PathEscape(id), nil, &out)
	return out, err
}

// ListCampaigns lists the campaigns, newest first.
func (c *Client) ListCampaigns(ctx context.Context) ([]api.Campaign, error) {
	var out api.CampaignList
	err := c.do(ctx, http.MethodGet, "/v1/campaigns", nil, &out)
	return out.Campaigns, err
}

// CancelCampaign cancels a running campaign.
func (c *Client) CancelCampaign(ctx context.Context, id string) (api.Campaign, error) {
	var out api.Campaign
	err := c.do(ctx, http.MethodDelete, "/v1/campaigns/"+url.PathEscape(id), nil, &out)
	return out, err
}
