package registry

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on device fields. They bound memory per device as much as they
// reject nonsense.
const (
	MaxURLLen   = 2048 // connection_request_url
	MaxFieldLen = 256  // username, password, stun_username, stun_password, xmpp_password
	MaxJIDPart  = 1023 // RFC 7622 3.1: each part of a JID is at most 1023 bytes
)

// validate checks every field of d, returning a *FieldError for the first
// bad one. It checks syntax only: whether a URL's destination is allowed is
// the wake path's policy, not the registry's.
func validate(d *Device) error {
	if err := validateID(d.ID); err != nil {
		return err
	}
	if d.ConnectionRequestURL != "" {
		if r := checkURL(d.ConnectionRequestURL); r != "" {
			return &FieldError{"connection_request_url", r}
		}
	}
	for _, f := range [...]struct{ name, v string }{
		{"username", d.Username},
		{"password", d.Password},
		{"stun_username", d.STUNUsername},
		{"stun_password", d.STUNPassword},
		{"xmpp_password", d.XMPPPassword},
	} {
		if r := checkText(f.v, MaxFieldLen); r != "" {
			return &FieldError{f.name, r}
		}
	}
	// CPE stacks pad USERNAME with spaces and the STUN decoder trims them,
	// so a registered name ending in a space could never match.
	if n := len(d.STUNUsername); n > 0 && d.STUNUsername[n-1] == ' ' {
		return &FieldError{"stun_username", "ends with a space (STUN USERNAME padding is trimmed, so it could never match)"}
	}
	if d.UDPAddress != "" {
		if _, r := parseUDPAddress(d.UDPAddress); r != "" {
			return &FieldError{"udp_address", r}
		}
	}
	if d.XMPPJID != "" {
		if r := checkJID(d.XMPPJID); r != "" {
			return &FieldError{"xmpp_jid", r}
		}
	}
	var seen [4]bool
	for _, t := range d.Transports {
		c := transportCode(t)
		if c == 0 {
			return &FieldError{"transports", fmt.Sprintf("unknown transport %q", truncate(string(t), 32))}
		}
		if seen[c] {
			return &FieldError{"transports", fmt.Sprintf("%s listed twice", t)}
		}
		seen[c] = true
	}
	return nil
}

func validateID(id string) error {
	switch {
	case id == "":
		return &FieldError{"id", "empty"}
	case len(id) > MaxIDLen:
		return &FieldError{"id", fmt.Sprintf("longer than %d bytes", MaxIDLen)}
	case !utf8.ValidString(id):
		return &FieldError{"id", "not valid UTF-8"}
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return &FieldError{"id", fmt.Sprintf("contains the unprintable character %U", r)}
		}
	}
	return nil
}

// checkText returns why s is not acceptable text, or "". The reason never
// quotes s: the field may be a password.
func checkText(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains the control character %U", r)
		}
	}
	return ""
}

func checkURL(s string) string {
	if r := checkText(s, MaxURLLen); r != "" {
		return r
	}
	u, err := url.Parse(s)
	if err != nil {
		return "not a URL"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "scheme must be http or https"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "must be an absolute URL with a host"
	case u.User != nil:
		// Credentials belong in username/password, where they are sealed.
		return "must not carry user-info"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "port out of range"
		}
	}
	return ""
}

// parseUDPAddress parses an IP:port as TR-111 reports it (IPv6 in
// brackets) and returns its index key: IPv4-mapped IPv6 is unmapped so
// both spellings name the same binding.
func parseUDPAddress(s string) (udpKey, string) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return udpKey{}, "must be IP:port or [IPv6]:port"
	}
	if ap.Addr().Zone() != "" {
		return udpKey{}, "must not carry an IPv6 zone"
	}
	if ap.Port() == 0 {
		return udpKey{}, "port out of range"
	}
	return makeUDPKey(ap), ""
}

// udpKey is a UDP address in 18 bytes, the index key for ByUDPAddress.
type udpKey [18]byte

func makeUDPKey(ap netip.AddrPort) udpKey {
	var k udpKey
	a := ap.Addr().Unmap().As16()
	copy(k[:16], a[:])
	k[16], k[17] = byte(ap.Port()>>8), byte(ap.Port())
	return k
}

// checkJID checks localpart@domain[/resource] (RFC 7622 3). The localpart
// is required: a CPE's ConnReqJabberID is an account.
func checkJID(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	bare, res, full := strings.Cut(s, "/")
	local, domain, ok := strings.Cut(bare, "@")
	switch {
	case !ok || local == "":
		return "must be localpart@domain or localpart@domain/resource"
	case len(local) > MaxJIDPart || len(domain) > MaxJIDPart || len(res) > MaxJIDPart:
		return fmt.Sprintf("a part is longer than %d bytes", MaxJIDPart)
	case domain == "" || (full && res == ""):
		return "empty domain or resource"
	// RFC 7622 3.3.1: characters the localpart must not hold.
	case strings.ContainsAny(local, "\"&':<>@"):
		return "localpart contains a forbidden character"
	case strings.ContainsAny(domain, "@"):
		return "domain contains '@'"
	}
	for _, r := range bare {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "contains a space or control character"
		}
	}
	for _, r := range res {
		if unicode.IsControl(r) {
			return "resource contains a control character"
		}
	}
	return ""
}

// jidKey is the index key of a JID: its bare form, case-folded. RFC 7622
// compares localparts under the UsernameCaseMapped profile and domains
// after IDNA lowercasing; Unicode lowercasing is exact for ASCII, which is
// what CPEs use, and close for the rest. The resource is dropped: bare JIDs
// are unique across devices, so the bare form finds the one device.
// It allocates only when s has upper case.
func jidKey(s string) string {
	bare, _, _ := strings.Cut(s, "/")
	return strings.ToLower(bare)
}

func transportCode(t Transport) uint8 {
	switch t {
	case TransportXMPP:
		return 1
	case TransportUDP:
		return 2
	case TransportHTTP:
		return 3
	}
	return 0
}

var transportByCode = [4]Transport{"", TransportXMPP, TransportUDP, TransportHTTP}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
