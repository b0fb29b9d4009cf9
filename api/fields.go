package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/crrelay/crrelay/registry"
)

// deviceFields are the writable fields of a device, as PUT and PATCH take
// them. PUT starts from an empty device, PATCH from the stored one; in both
// a JSON null clears the field.
var deviceFields = map[string]func(d *registry.Device, name string, raw json.RawMessage) *apiError{
	"connection_request_url": str(func(d *registry.Device) *string { return &d.ConnectionRequestURL }),
	"username":               str(func(d *registry.Device) *string { return &d.Username }),
	"password":               str(func(d *registry.Device) *string { return &d.Password }),
	"stun_username":          str(func(d *registry.Device) *string { return &d.STUNUsername }),
	"stun_password":          str(func(d *registry.Device) *string { return &d.STUNPassword }),
	"udp_address":            str(func(d *registry.Device) *string { return &d.UDPAddress }),
	"xmpp_jid":               str(func(d *registry.Device) *string { return &d.XMPPJID }),
	"xmpp_password":          str(func(d *registry.Device) *string { return &d.XMPPPassword }),
	"allow_basic": func(d *registry.Device, name string, raw json.RawMessage) *apiError {
		d.AllowBasic = false
		return decodeField(name, raw, &d.AllowBasic, "a boolean")
	},
	"transports": func(d *registry.Device, name string, raw json.RawMessage) *apiError {
		d.Transports = nil
		return decodeField(name, raw, &d.Transports, `an array of "xmpp", "udp", "http"`)
	},
}

func str(field func(*registry.Device) *string) func(*registry.Device, string, json.RawMessage) *apiError {
	return func(d *registry.Device, name string, raw json.RawMessage) *apiError {
		p := field(d)
		*p = ""
		return decodeField(name, raw, p, "a string")
	}
}

// decodeField decodes one field; JSON null leaves the zero value the
// caller set, which clears the field.
func decodeField(name string, raw json.RawMessage, v any, want string) *apiError {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fieldErr(name, "%s must be %s", name, want)
	}
	return nil
}

// readFields reads a device body as a JSON object, rejecting unknown keys.
func (s *Server) readFields(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, *apiError) {
	var m map[string]json.RawMessage
	if aerr := s.readJSON(w, r, &m, false); aerr != nil {
		return nil, aerr
	}
	if m == nil {
		return nil, errf(http.StatusBadRequest, CodeBadRequest, "request body must be a JSON object")
	}
	var unknown []string
	for k := range m {
		if _, ok := deviceFields[k]; !ok && k != "id" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		e := errf(http.StatusBadRequest, CodeBadRequest, "unknown field(s): %s", strings.Join(unknown, ", "))
		e.Field = unknown[0]
		return nil, e
	}
	return m, nil
}

// apply writes the given fields into d. An "id" in the body must match
// the path. The registry validates values; the destination policy is
// checked here because only the API can tell the ACS about it.
func (s *Server) apply(d *registry.Device, m map[string]json.RawMessage) *apiError {
	if raw, ok := m["id"]; ok {
		var id string
		if json.Unmarshal(raw, &id) != nil || id != d.ID {
			return fieldErr("id", "id in the body must match the id in the path")
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the first bad field is always the same
	for _, k := range keys {
		if k == "id" {
			continue
		}
		if aerr := deviceFields[k](d, k, m[k]); aerr != nil {
			return aerr
		}
	}
	if _, ok := m["connection_request_url"]; ok && d.ConnectionRequestURL != "" && s.cfg.CheckURL != nil {
		if err := s.cfg.CheckURL(d.ConnectionRequestURL); err != nil {
			return toAPIError(err)
		}
	}
	return nil
}
