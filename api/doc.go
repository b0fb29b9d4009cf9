// Package api is the HTTP/JSON interface the ACS calls: register devices,
// wake them, read their state. It is documented for clients by openapi.yaml
// (served at /v1/openapi.yaml and kept true by a test against the routes
// declared here).
//
// Every request under /v1 needs "Authorization: Bearer <token>", compared
// in constant time. Every error is JSON:
//
//	{"error":{"code":"not_found","message":"device \"x\" not found"}}
//
// The package reaches the registry and the wake path through the small
// interfaces declared in server.go; secrets (passwords) are accepted on
// input and never returned: responses say only whether one is set.
//
// /healthz, /readyz and /metrics need no token: they carry no device data
// (metric labels never name a device).
package api
