package sim

import "errors"

var (
	// Configuration errors, returned (wrapped with the offending CPE's
	// name) by NewFleet and Fleet.Add.
	ErrBadName            = errors.New("sim: name must be 1-128 of A-Z a-z 0-9 . _ ~ -")
	ErrDuplicateName      = errors.New("sim: duplicate CPE name")
	ErrUnknownMode        = errors.New("sim: unknown mode")
	ErrBadCredentials     = errors.New("sim: Basic credentials cannot hold ':' in the username")
	ErrBadSuccessStatus   = errors.New("sim: success status must be 200 or 204")
	ErrBadRateLimit       = errors.New("sim: rate limit and window must not be negative")
	ErrBadNonceTTL        = errors.New("sim: nonce lifetime must not be negative")
	ErrConflictingOptions = errors.New("sim: CloseAfter401 and NoncePerConnection together make authentication impossible")
	ErrBadCount           = errors.New("sim: fleet Count and the Every options must not be negative")

	// Why a connection request was refused. They never leave the package:
	// the CPE logs them, and the client sees only the status code, as with
	// a real CPE.

	// 400 Bad Request.
	errAuthSyntax    = errors.New("sim: malformed Authorization header")
	errAuthDuplicate = errors.New("sim: duplicate Authorization parameter")
	errAuthTooMany   = errors.New("sim: too many Authorization parameters")
	errAuthMultiple  = errors.New("sim: more than one Authorization header")
	errMissingParam  = errors.New("sim: Digest answer lacks username, realm, nonce, uri, response or cnonce")
	errBadNC         = errors.New("sim: nc is not 8 hex digits")
	errURI           = errors.New("sim: uri does not match the request-target")
	errMethod        = errors.New("sim: method is not GET")

	// 401 Unauthorized with a fresh challenge.
	errWrongScheme     = errors.New("sim: wrong authentication scheme")
	errQopNotOffered   = errors.New("sim: qop, nc or cnonce in answer to a challenge without qop")
	errBadQop          = errors.New(`sim: qop is not "auth"`)
	errAlgorithm       = errors.New("sim: algorithm does not match the challenge")
	errOpaque          = errors.New("sim: opaque not echoed")
	errRealm           = errors.New("sim: wrong realm")
	errUsername        = errors.New("sim: wrong username")
	errUserhash        = errors.New("sim: userhash is not supported")
	errUnknownNonce    = errors.New("sim: unknown nonce")
	errOtherConnection = errors.New("sim: nonce was issued on another connection")
	errResponse        = errors.New("sim: wrong response")
	errPassword        = errors.New("sim: wrong username or password")
	errReplay          = errors.New("sim: nc did not increase")
	errStale           = errors.New("sim: nonce expired") // 401 with stale=true
)
