package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/crrelay/crrelay/httpcr"
	"github.com/crrelay/crrelay/registry"
	"github.com/crrelay/crrelay/wake"
)

// Error codes of the JSON error body.
const (
	CodeUnauthorized      = "unauthorized"
	CodeNotFound          = "not_found"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeBadRequest        = "bad_request"        // malformed JSON, unknown field, bad query
	CodeInvalidArgument   = "invalid_argument"   // a field's value is not acceptable
	CodeDestinationDenied = "destination_denied" // connection_request_url outside the destination policy
	CodeConflict          = "conflict"           // another device owns that identity
	CodeTooLarge          = "request_too_large"
	CodeRateLimited       = "rate_limited" // over the appliance's wake limits: retry later
	CodeUnavailable       = "unavailable"
	CodeInternal          = "internal"
)

// errorCodes lists every code, for the OpenAPI test.
var errorCodes = []string{CodeUnauthorized, CodeNotFound, CodeMethodNotAllowed, CodeBadRequest, CodeInvalidArgument,
	CodeDestinationDenied, CodeConflict, CodeTooLarge, CodeRateLimited, CodeUnavailable, CodeInternal}

// ErrorBody is the JSON every error answers with.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the error itself. Field names the offending input field
// when there is one.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// apiError is an error that knows its HTTP status and code.
type apiError struct {
	status int
	ErrorDetail
}

func (e *apiError) Error() string { return e.Message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, ErrorDetail: ErrorDetail{Code: code, Message: fmt.Sprintf(format, args...)}}
}

func fieldErr(field, format string, args ...any) *apiError {
	e := errf(http.StatusBadRequest, CodeInvalidArgument, format, args...)
	e.Field = field
	return e
}

// toAPIError maps package errors to statuses. Anything unknown is a 500
// whose message does not leak internals.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var fe *registry.FieldError
	var ce *registry.ConflictError
	switch {
	case errors.As(err, &fe):
		return fieldErr(fe.Field, "%s: %s", fe.Field, fe.Reason)
	case errors.As(err, &ce):
		e := errf(http.StatusConflict, CodeConflict, "%s is already used by another device", ce.Field)
		e.Field = ce.Field
		return e
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, wake.ErrNotFound):
		return errf(http.StatusNotFound, CodeNotFound, "device not found")
	case errors.Is(err, registry.ErrInvalid):
		return errf(http.StatusBadRequest, CodeInvalidArgument, "%v", err)
	case errors.Is(err, httpcr.ErrDenied):
		e := errf(http.StatusBadRequest, CodeDestinationDenied, "connection_request_url: %v", err)
		e.Field = "connection_request_url"
		return e
	case errors.Is(err, httpcr.ErrBadURL):
		return fieldErr("connection_request_url", "connection_request_url: %v", err)
	case errors.Is(err, wake.ErrUnknownTransport):
		return fieldErr("transports", "%v", err)
	case errors.Is(err, wake.ErrBadTimeout):
		return fieldErr("timeout_ms", "%v", err)
	case errors.Is(err, wake.ErrBadRequest):
		return errf(http.StatusBadRequest, CodeInvalidArgument, "%v", err)
	case errors.Is(err, wake.ErrBusy):
		return errf(http.StatusTooManyRequests, CodeRateLimited, "%v; nothing was sent, retry later", err)
	case errors.Is(err, registry.ErrClosed):
		return errf(http.StatusServiceUnavailable, CodeUnavailable, "the appliance is shutting down")
	}
	return errf(http.StatusInternalServerError, CodeInternal, "internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away: nothing left to tell it
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.status, ErrorBody{Error: e.ErrorDetail})
}
