package events

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// maxFilterDevices bounds Filter.Devices in ParseFilter: a query is
// untrusted input, and a subscription's filter is checked on every Publish.
const maxFilterDevices = 1000

// Filter selects events. An empty field selects everything; the fields
// combine with AND, the values within a field with OR.
type Filter struct {
	// Types holds event types ("wake.result"), or families: "xmpp" and
	// "xmpp." both select every "xmpp.*" type.
	Types []string
	// Devices holds device ids. An event with no Device never matches a
	// device filter.
	Devices []string
	// Campaign is a campaign id. An event with no Campaign never matches
	// a campaign filter.
	Campaign string
}

// ParseFilter reads a Filter from the query parameters type, device and
// campaign, ignoring any other. type and device may be repeated and each
// value may hold a comma-separated list; empty items are skipped. A type
// must be a known type or family, or the error (wrapping ErrBadFilter)
// says which is not and lists the accepted ones. campaign is a single id.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	for _, t := range splitList(q["type"]) {
		if !knownTypeOrFamily(t) {
			return Filter{}, fmt.Errorf("%w: unknown event type %q (want one of %s, or a family: %s)",
				ErrBadFilter, t, strings.Join(knownTypes[:], ", "), strings.Join(families[:], ", "))
		}
		if !slices.Contains(f.Types, t) {
			f.Types = append(f.Types, t)
		}
	}
	f.Devices = splitList(q["device"])
	if len(f.Devices) > maxFilterDevices {
		return Filter{}, fmt.Errorf("%w: %d devices, at most %d", ErrBadFilter, len(f.Devices), maxFilterDevices)
	}
	switch c := q["campaign"]; {
	case len(c) > 1:
		return Filter{}, fmt.Errorf("%w: campaign given %d times, at most once", ErrBadFilter, len(c))
	case len(c) == 1:
		f.Campaign = strings.TrimSpace(c[0])
	}
	return f, nil
}

// splitList flattens repeated, comma-separated values.
func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

func knownTypeOrFamily(t string) bool {
	if typeIndex(t) != typeOther {
		return true
	}
	return slices.Contains(families[:], strings.TrimSuffix(t, "."))
}

// typeMatches reports whether the filter entry pattern selects type t.
func typeMatches(pattern, t string) bool {
	if pattern == t {
		return true
	}
	if strings.HasSuffix(pattern, ".") {
		return strings.HasPrefix(t, pattern)
	}
	return len(t) > len(pattern) && t[len(pattern)] == '.' && strings.HasPrefix(t, pattern)
}

// matcher is a Filter compiled for Publish, which checks it against every
// event under the Bus lock: a bit per known type, a set for many devices.
type matcher struct {
	anyType  bool
	typeBits uint32   // bit i: knownTypes[i] selected
	types    []string // the raw patterns, for types outside knownTypes
	devices  []string // few devices: a scan beats hashing
	devSet   map[string]struct{}
	campaign string
}

func compile(f Filter) *matcher {
	m := &matcher{anyType: len(f.Types) == 0, types: slices.Clone(f.Types), campaign: f.Campaign}
	for i, t := range knownTypes {
		for _, p := range f.Types {
			if typeMatches(p, t) {
				m.typeBits |= 1 << i
			}
		}
	}
	if len(f.Devices) > 8 {
		m.devSet = make(map[string]struct{}, len(f.Devices))
		for _, d := range f.Devices {
			m.devSet[d] = struct{}{}
		}
	} else {
		m.devices = slices.Clone(f.Devices)
	}
	return m
}

// match reports whether e, whose type has index ti, passes the filter.
func (m *matcher) match(e *Event, ti int) bool {
	if !m.anyType {
		if ti != typeOther {
			if m.typeBits&(1<<ti) == 0 {
				return false
			}
		} else if !slices.ContainsFunc(m.types, func(p string) bool { return typeMatches(p, e.Type) }) {
			return false
		}
	}
	if m.devSet != nil {
		if _, ok := m.devSet[e.Device]; !ok {
			return false
		}
	} else if len(m.devices) > 0 && !slices.Contains(m.devices, e.Device) {
		return false
	}
	return m.campaign == "" || m.campaign == e.Campaign
}
