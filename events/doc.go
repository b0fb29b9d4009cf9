// Package events is the appliance's event stream: what happens to devices
// and campaigns (a UDP binding appears or moves, an XMPP session comes or
// goes, a wake is sent or confirmed, a campaign progresses), told to the
// ACS as it happens, over Server-Sent Events and optionally pushed to a
// webhook.
//
// Components publish on a Bus; consumers subscribe to it with a Filter.
//
//	bus, err := events.NewBus(events.Config{Metrics: reg, Logger: log})
//	context.AfterFunc(ctx, bus.Close) // ends the SSE streams at shutdown
//	bus.Publish(events.New(events.WakeResult, deviceID, result))
//	mux.HandleFunc("GET /v1/events", bus.ServeSSE) // behind the API's auth
//	hook, err := events.NewWebhook(events.WebhookConfig{URL: u, Secret: key})
//	g.Go(func() error { return hook.Run(ctx, bus) })
//
// Close the Bus when shutting down, no later than the HTTP server's
// Shutdown: that waits for handlers to return, and an SSE stream only
// returns when its client leaves or the Bus closes.
//
// # Delivery
//
// Publish numbers each event (IDs start at 1 in each run of the process and
// strictly increase), keeps the last Config.History events, and offers the
// event to every subscriber whose filter matches. It never waits: it is
// called from the STUN server and the wake path at tens of thousands of
// events a second. A subscriber that does not keep up loses events once
// its buffer is full; each loss is counted, per subscriber (Dropped) and
// in crrelay_events_dropped_total{consumer}, and an SSE client is told. A
// subscriber sees its events in ID order.
//
// # Server-Sent Events
//
// ServeSSE answers GET with Content-Type text/event-stream, Cache-Control
// no-cache and X-Accel-Buffering no, then writes, in this order:
//
//	retry: 2000
//
//	event: dropped                      (only if events were lost, see below)
//	data: {"dropped":N}
//
//	id: 42
//	event: wake.result
//	data: {"id":42,"type":"wake.result","at":"2025-01-02T03:04:05.123456789Z","device":"00D09E-CPE-1","data":{...}}
//
//	: keepalive
//
// One message per event: its id, its type as the SSE event name, and the
// Event as JSON on one line. A ": keepalive" comment is sent every
// Config.Heartbeat (15s). Messages are flushed in bursts of at most 256.
//
// An "event: dropped" message (no id) says events were lost for this
// client, and the client should resynchronise (list the state it tracks)
// rather than trust the stream alone; data is {"dropped":N}, N the number
// lost since the previous such message. It is sent after a burst when the
// client's buffer overflowed, and first thing when resuming from an ID
// whose successors have left the history (N counts those, matching the
// filter or not). When the ID to resume from is greater than any this run
// has assigned (the appliance restarted since), the whole history is
// replayed after {"dropped":N,"reset":true}, N counting what this run has
// already forgotten.
//
// Query parameters (ParseFilter): type (an event type or a family such as
// "xmpp"), device and campaign select events; type and device may be
// repeated or comma-separated. To resume, a client sends the Last-Event-ID
// header (an EventSource does so by itself when it reconnects) or, on a
// first connection, the last_event_id parameter; the header wins. Events
// after that ID still in the history are replayed first, then live ones
// follow with no gap or duplicate.
//
// Errors are JSON, {"error":{"code":"...","message":"..."}}, as the API's:
// 400 bad_request (unknown type, malformed Last-Event-ID), 405
// method_not_allowed (not GET, with Allow: GET), 503 unavailable
// (Config.MaxClients streams already open, with Retry-After: 5; or the Bus
// is closed).
//
// The stream ends when the client disconnects, the request's context ends,
// or the Bus is closed. ServeSSE sets a write deadline of
// Config.WriteTimeout before each write, so an http.Server WriteTimeout
// does not cut streams, and a client that stops reading does not hold a
// slot. (net/http lifts the ReadTimeout deadline itself once a request
// without a body has been read.)
//
// # Webhook
//
// A Webhook POSTs the events matching its filter to one URL, in batches of
// up to WebhookConfig.BatchSize, in order: a batch is settled (accepted or
// given up) before the next is sent. The body is
//
//	{"events":[{"id":42,"type":"wake.result","at":"...","device":"...","data":{...}}, ...]}
//
// with the headers
//
//	Content-Type: application/json
//	User-Agent: crrelay-webhook
//	X-Crrelay-Timestamp: 1735787045
//	X-Crrelay-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>
//
// The timestamp is the Unix time in seconds of the attempt and the body the
// exact bytes sent; a retry is signed anew. Receivers check both with
// Verify, which rejects a stale timestamp to stop replays.
//
// Any 2xx accepts a batch. A network error, a timeout, 408, 429 and 5xx
// are retried after an exponential backoff with jitter (Retry-After, in
// seconds or as a date, is obeyed instead when given, capped at
// MaxBackoff), up to MaxAttempts POSTs; other statuses, redirects
// included, fail the batch at once. A failed batch is dropped, logged and
// counted. Delivery is at least once: a batch whose response is lost is
// sent again, so receivers should ignore event IDs they have seen (IDs
// restart at 1 when the appliance restarts).
//
// The queue between the Bus and the POSTs holds WebhookConfig.QueueSize
// events; when the receiver is slower than the events, new ones are
// dropped and counted. Run delivers until its context ends, then for up to
// ShutdownGrace what is still queued.
//
// # Metrics
//
//	crrelay_events_published_total{type}         events published (unknown types as "other")
//	crrelay_events_dropped_total{consumer}        events lost: "sse", "webhook", or "other" (direct Subscribe)
//	crrelay_events_sse_clients                    open SSE streams
//	crrelay_webhook_deliveries_total{result}      POSTs: "ok", "retry" (failed, retried), "failed" (batch given up)
//	crrelay_webhook_queue_length                  events waiting for the webhook, the batch in flight included
package events
