package httpcr

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestPolicyCheck(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []netip.Prefix
		ip          string // "" = the zero Addr
		wantDenied  bool
	}{
		{"public IPv4", nil, nil, "192.0.2.1", false},
		{"public IPv6", nil, nil, "2001:db8::1", false},
		{"private range: CPE management network", nil, nil, "10.1.2.3", false},
		{"CGNAT range", nil, nil, "100.64.0.1", false},
		{"loopback", nil, nil, "127.0.0.1", true},
		{"loopback elsewhere in /8", nil, nil, "127.1.2.3", true},
		{"IPv6 loopback", nil, nil, "::1", true},
		{"IPv4-mapped loopback", nil, nil, "::ffff:127.0.0.1", true},
		{"unspecified", nil, nil, "0.0.0.0", true},
		{"this network", nil, nil, "0.1.2.3", true},
		{"IPv6 unspecified", nil, nil, "::", true},
		{"link-local: cloud metadata", nil, nil, "169.254.169.254", true},
		{"mapped link-local", nil, nil, "::ffff:169.254.169.254", true},
		{"IPv6 link-local", nil, nil, "fe80::1", true},
		{"IPv6 link-local with zone", nil, nil, "fe80::1%eth0", true},
		{"multicast", nil, nil, "224.0.0.1", true},
		{"IPv6 multicast", nil, nil, "ff02::1", true},
		{"broadcast", nil, nil, "255.255.255.255", true},
		{"invalid", nil, nil, "", true},
		{"loopback explicitly allowed", prefixes("127.0.0.0/8"), nil, "127.0.0.1", false},
		{"allow list excludes the rest", prefixes("127.0.0.0/8"), nil, "::1", true},
		{"allow list admits", prefixes("10.0.0.0/8"), nil, "10.9.9.9", false},
		{"allow list refuses public", prefixes("10.0.0.0/8"), nil, "192.0.2.1", true},
		{"deny wins over allow", prefixes("10.0.0.0/8"), prefixes("10.0.0.0/8"), "10.1.1.1", true},
		{"deny inside allow", prefixes("10.0.0.0/8"), prefixes("10.66.0.0/16"), "10.66.1.1", true},
		{"deny", nil, prefixes("192.0.2.0/24"), "192.0.2.1", true},
		{"deny matches mapped address", nil, prefixes("192.0.2.0/24"), "::ffff:192.0.2.1", true},
		{"mapped deny prefix matches IPv4", nil, prefixes("::ffff:192.0.2.0/120"), "192.0.2.1", true},
		{"deny elsewhere", nil, prefixes("192.0.2.0/24"), "198.51.100.1", false},
		{"zone does not dodge a deny", prefixes("fe80::/10"), prefixes("fe80::/64"), "fe80::1%eth0", true},
		{"zoned link-local explicitly allowed", prefixes("fe80::/10"), nil, "fe80::1%eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(tt.allow, tt.deny)
			if err != nil {
				t.Fatal(err)
			}
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			err = p.Check(ip)
			if denied := errors.Is(err, ErrDenied); denied != tt.wantDenied || (err != nil && !denied) {
				t.Errorf("Check(%s) = %v, want denied %v", tt.ip, err, tt.wantDenied)
			}
		})
	}
}

func TestPolicyOwnAddresses(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var own netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(n.IP)
			ip = ip.Unmap()
			if ip.IsGlobalUnicast() || ip.IsPrivate() {
				own = ip
				break
			}
		}
	}
	if !own.IsValid() {
		t.Skip("no non-loopback interface address on this machine")
	}
	p, err := NewPolicy(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(own); !errors.Is(err, ErrDenied) {
		t.Errorf("Check(own address %s) = %v, want ErrDenied", own, err)
	}
	p, err = NewPolicy([]netip.Prefix{netip.PrefixFrom(own, own.BitLen())}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(own); err != nil {
		t.Errorf("Check(own address %s) explicitly allowed = %v", own, err)
	}
}

func TestNewPolicyBadPrefix(t *testing.T) {
	if _, err := NewPolicy([]netip.Prefix{{}}, nil); !errors.Is(err, ErrBadPrefix) {
		t.Errorf("allow zero prefix: %v, want ErrBadPrefix", err)
	}
	if _, err := NewPolicy(nil, []netip.Prefix{{}}); !errors.Is(err, ErrBadPrefix) {
		t.Errorf("deny zero prefix: %v, want ErrBadPrefix", err)
	}
}

func TestCheckURL(t *testing.T) {
	p, err := NewPolicy(nil, prefixes("198.51.100.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		url     string
		wantErr error
	}{
		{"IPv4 with port", "http://192.0.2.1:7547/cr", nil},
		{"https host name: checked at dial time", "https://cpe-0001.example.net/", nil},
		{"upper-case scheme", "HTTP://192.0.2.1:7547", nil},
		{"IPv6 literal", "http://[2001:db8::1]:7547/", nil},
		{"query only", "http://192.0.2.1:7547?id=1", nil},
		{"loopback literal", "http://127.0.0.1:7547/", ErrDenied},
		{"IPv6 loopback literal", "http://[::1]:7547/", ErrDenied},
		{"mapped loopback literal", "http://[::ffff:7f00:1]/", ErrDenied},
		{"zoned link-local literal", "http://[fe80::1%25eth0]:7547/", ErrDenied},
		{"denied prefix", "http://198.51.100.7/", ErrDenied},
		{"empty", "", ErrBadURL},
		{"no scheme", "192.0.2.1:7547/cr", ErrBadURL},
		{"other scheme", "udp://192.0.2.1:7547", ErrBadURL},
		{"user information", "http://admin:admin@192.0.2.1/", ErrBadURL},
		{"no host", "http:///cr", ErrBadURL},
		{"empty port", "http://192.0.2.1:/", ErrBadURL},
		{"port 0", "http://192.0.2.1:0/", ErrBadURL},
		{"port too large", "http://192.0.2.1:65536/", ErrBadURL},
		{"unclosed bracket", "http://[::1/", ErrBadURL},
		{"bad IPv6 literal", "http://[not-an-ip]/", ErrBadURL},
		{"space in host", "http://cpe .example/", ErrBadURL},
		{"CRLF", "http://192.0.2.1/\r\nHost: x", ErrBadURL},
		{"opaque", "http:192.0.2.1", ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.CheckURL(tt.url)
			if (tt.wantErr == nil) != (err == nil) || (err != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("CheckURL(%q) = %v, want %v", tt.url, err, tt.wantErr)
			}
		})
	}
}
