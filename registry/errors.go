package registry

import "errors"

var (
	ErrNotFound = errors.New("registry: device not found")
	ErrConflict = errors.New("registry: conflict")
	ErrInvalid  = errors.New("registry: invalid") // a device field (FieldError) or an option
	ErrClosed   = errors.New("registry: closed")
	// ErrBadKey means the secret key is malformed or is not the key the
	// store was sealed with. The registry refuses to start rather than
	// hand out secrets it cannot open.
	ErrBadKey = errors.New("registry: bad secret key")
	// ErrCorrupt means a stored record cannot be decoded, or a sealed
	// secret fails authentication although the key is right (the record
	// was altered, or a sealed value was moved to another record).
	ErrCorrupt = errors.New("registry: corrupt record")
)

// FieldError is a validation failure of one device field. Field is the
// field's API name ("stun_username"); Reason says what is wrong with it and
// never repeats a secret value.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "registry: invalid " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// ConflictError reports that another device already owns a value that must
// be unique: Field is "stun_username", "xmpp_jid" or "udp_address".
type ConflictError struct {
	Field string
}

func (e *ConflictError) Error() string {
	return "registry: conflict: " + e.Field + " is already used by another device"
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }
