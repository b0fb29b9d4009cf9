package xmpp

import (
	"errors"
	"strings"

	"mellium.im/xmpp/jid"
)

var errJID = errors.New("xmpp: malformed JID")

// address is a JID in the form used to find sessions: localpart and
// domainpart normalised (RFC 7622 3.2 and 3.3: PRECIS UsernameCaseMapped,
// lower case), the resource normalised by OpaqueString (RFC 7622 3.4),
// which leaves an ASCII resource as it is.
type address struct {
	key   string // [local@]domain[/resource]
	bare  int    // key[:bare] is the bare JID
	local int    // key[:local] is the localpart; 0 if none
}

func (a address) bareKey() string   { return a.key[:a.bare] }
func (a address) hasResource() bool { return len(a.key) > a.bare }
func (a address) hasLocal() bool    { return a.local > 0 }

func (a address) domain() string {
	if a.local > 0 {
		return a.key[a.local+1 : a.bare]
	}
	return a.key[:a.bare]
}

// parseJID normalises s. ASCII JIDs, which are what CPEs and ACSes use,
// take a fast path that gives the same result as PRECIS: lower case for
// localpart and domainpart, the resource unchanged. Others go through
// mellium's jid package.
func parseJID(s string) (address, error) {
	if a, ok := parseASCII(s); ok {
		return a, nil
	}
	j, err := jid.Parse(s)
	if err != nil {
		return address{}, errJID
	}
	l, d, r := j.Localpart(), j.Domainpart(), j.Resourcepart()
	var a address
	if l != "" {
		a.key = l + "@"
		a.local = len(l)
	}
	a.key += d
	a.bare = len(a.key)
	if r != "" {
		a.key += "/" + r
	}
	return a, nil
}

// parseFullJID is parseJID for a JID that must have a localpart and a
// resource.
func parseFullJID(s string) (address, error) {
	a, err := parseJID(s)
	if err != nil || !a.hasLocal() || !a.hasResource() {
		return address{}, errJID
	}
	return a, nil
}

// parseASCII handles JIDs made of printable ASCII. It reports false for
// anything it is not sure of, leaving it to the full parser.
func parseASCII(s string) (address, bool) {
	if len(s) == 0 || len(s) > 3071 {
		return address{}, false
	}
	slash := strings.IndexByte(s, '/')
	bare := s
	if slash >= 0 {
		bare = s[:slash]
		r := s[slash+1:]
		if r == "" || len(r) > 1023 {
			return address{}, false
		}
		for i := 0; i < len(r); i++ {
			// OpaqueString keeps printable ASCII, space included, as it
			// is; a leading or trailing space is still fine.
			if r[i] < 0x20 || r[i] > 0x7e {
				return address{}, false
			}
		}
	}
	at := strings.IndexByte(bare, '@')
	local, domain := "", bare
	if at >= 0 {
		local, domain = bare[:at], bare[at+1:]
		if local == "" || len(local) > 1023 {
			return address{}, false
		}
		for i := 0; i < len(local); i++ {
			c := local[i]
			// RFC 7622 3.3.1: these are not allowed in a localpart;
			// UsernameCaseMapped refuses spaces and controls.
			if c <= 0x20 || c > 0x7e || strings.IndexByte(`"&'/:<>@`, c) >= 0 {
				return address{}, false
			}
		}
	}
	if domain == "" || len(domain) > 1023 || domain[len(domain)-1] == '.' || domain[0] == '[' {
		// Trailing dots and IPv6 literals: the full parser.
		return address{}, false
	}
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return address{}, false
		}
	}
	a := address{key: s, bare: len(bare)}
	if fb := foldASCII(bare); fb != bare {
		a.key = fb + s[len(bare):]
	}
	if at >= 0 {
		a.local = at
	}
	return a, true
}
