// Package campaign runs bulk connection-request campaigns: one request to
// each of up to hundreds of thousands of devices, at a bounded rate and
// concurrency, persisted so that a campaign survives a restart of the
// appliance without waking any device twice.
//
// The package knows no transport, no registry and no API. It wakes devices
// through a Waker, turns filters into device ids through a Selector and
// reports progress to a Publisher; the appliance satisfies all three around
// its wake path and registry. A Manager owns the campaigns and their store.
//
// # Life of a campaign
//
// Start validates a Spec, snapshots its device list (the explicit ids, or
// what the Selector returns for the filter at that moment), writes it to the
// store and returns at once with the campaign running. Devices are woken in
// list order, at most Spec.Concurrency at a time and, when Spec.RatePerS is
// set, no faster than a token bucket allows (bursts of at most 50 ms worth
// of tokens). A campaign whose every device has a result is "done".
//
// Cancel stops a campaign: no further device is woken, wakes in flight are
// abandoned through their context (their devices count as "unknown" unless
// the Waker still reports a status), and the state becomes "cancelled".
// Devices never woken stay in Pending; they will never be woken.
//
// # Results
//
// Each device ends with exactly one status: a wake status word reported by
// the Waker ("delivered", "sent", "auth_failed", "throttled", "refused",
// "offline", "unreachable", "timeout", "error"), "not_found" when the
// device vanished from the registry (ErrDeviceNotFound), or "unknown" when
// its wake was in flight when the appliance stopped. A Waker that answers
// ErrBusy has not woken the device: the campaign backs off 10–50 ms and
// tries that device again, and ErrBusy is never a result.
//
// # Persistence and exactly-once
//
// The store is one bbolt file, <Dir>/campaigns.db. Each campaign is a
// bucket holding its metadata, its device list written once at Start in
// chunks of 4096 ids, a claimed cursor, and its results, one byte per
// device in chunks of 4096. Before a device is handed to the Waker, the
// cursor is durably moved past it (a claim, committed with fsync, covering
// at most about half a second of work). Results are kept in memory and
// committed every 200 ms, so a campaign costs a few commits a second
// whatever its rate.
//
// After a crash, Run finds devices claimed but without a result. They may
// have been woken, so they are counted "unknown" and never woken again;
// unclaimed devices continue. A clean stop (Close, or the end of Run's
// context) loses less: it stops handing out devices, gives wakes in flight
// Config.Grace to finish, records every result, and moves the cursor back
// over devices claimed but never handed out, so only wakes abandoned after
// the grace period are "unknown".
//
// Finished campaigns are kept for inspection, the newest Config.Keep of
// them; older ones are deleted from the store.
package campaign
