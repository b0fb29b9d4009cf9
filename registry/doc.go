// Package registry holds the devices the ACS registers: their
// connection-request credentials and addresses, and the live state the
// appliance learns about them while it runs.
//
// # Memory and lookups
//
// Every device is in memory, loaded from the store at start-up (New), and
// found in O(1) by id, STUN username, XMPP JID (bare or full) or UDP
// address. Lookups take a shared lock only and never touch the disk; they
// are the hot path of the STUN and XMPP servers. Memory is what limits how
// many devices an appliance holds, so a device is packed into one string
// plus 72 bytes, found through open-addressing indexes of 8-byte slots, and
// List pages through sorted chunks rather than sorting per call: about 330
// bytes a device in all at a million devices (BenchmarkLoad), and 192 more
// for a device with a UDP binding.
//
// # Durability
//
// Put, Update and Delete return only once the change is durable: written in
// a store transaction that has been fsynced. An acknowledged write survives
// kill -9 and a machine crash (as far as the disk honours fsync); a write
// that returns an error did not happen, and the in-memory index changes only
// after the commit succeeds. Concurrent writes to different devices share
// one transaction and one fsync (group commit), so throughput grows with
// concurrency while a lone write pays no batching delay. Writes to one
// device are serialised; Update is an atomic read-modify-write.
//
// Live state (recent wake results, UDP bindings; XMPP sessions as that
// transport lands) changes far more often than devices do, up to every STUN
// keepalive. It is kept in memory, marked dirty, and written in one batch
// every LiveFlushInterval (2s by default), by Flush, and by Close: one
// record per device, holding its wakes and its binding. A crash loses at
// most the last interval of live state, never a device. Live state is
// reloaded at start-up.
//
// # UDP bindings
//
// The STUN server reports every Binding Request that carries
// CONNECTION-REQUEST-BINDING (TR-069 Annex G) through ObserveBinding; the
// registry knows no STUN and keeps what it is told: the CPE's public
// (mapped) address, the relay socket that received it, when it was first
// and last seen, the CPE's keepalive interval, the changes of its mapping,
// and what those reveal of the subscriber's NAT timeout (UDPBinding). The
// device is found by STUN username, or, for a CPE that sends none, by the
// udp_address the ACS registered. A username no device has yet goes to a
// bounded, expiring pending table, and its binding is attached when Put or
// Update gives a device that stun_username. A binding belongs to its STUN
// identity: it goes with the device, and with a change of stun_username
// (replaced by the pending binding of the new name, if any).
//
// ObserveBinding is the hottest path of the appliance. Each device's
// binding is a small struct of its own behind its own lock, updated in
// place under the registry's shared lock: a keepalive copies no live state
// and allocates nothing. Persistence follows one rule: a binding that
// changed (new, attached, dropped, Mapped or Local moved, a counted
// BINDING-CHANGE, a NAT-timeout estimate disproved) is marked dirty at once
// and written at the next flush; a keepalive that only moves LastSeen (and
// the smoothed Keepalive and NAT evidence with it) marks it only once
// LastSeen is BindingSeenPersistInterval (30s by default) past the copy
// last written. A device thus costs at most one write per interval however
// often it sends keepalives, and after a restart its LastSeen may lag the
// truth by up to that interval plus LiveFlushInterval, never lead it
// (UDPBinding.Restored says so until the next request). Bindings survive
// restarts because the subscriber's NAT mapping does: a wake right after a
// restart can use it.
//
// # Secrets
//
// The password, STUN password and XMPP password are sealed at rest with
// AES-256-GCM: a random nonce per value, and the device id and field name
// as additional data, so a sealed value moved to another record or field
// fails to open instead of yielding another device's secret. Sealing happens
// here, above the Store, so every engine holds only sealed secrets. In
// memory they are plaintext: the transports need them on every wake.
//
// The key is 32 bytes. By default LoadOrCreateKey keeps it in the data
// directory as secret.key (hex, mode 0600), created on first start; or the
// configuration supplies it (ParseKey). Losing the key loses the secrets;
// back it up with the database, or better apart from it. A store opened with
// another key fails with ErrBadKey, checked against a known value sealed on
// first start, rather than yielding garbage. The registry never logs a
// secret, and its errors never quote one.
//
// # Stores
//
// Store is a byte-level interface: buckets of keys and values, atomic
// durable batch writes, and a full scan at start-up. BoltStore, a bbolt
// file in the data directory, is the embedded default; a shared engine
// serving several appliances can implement Store without touching the
// rest of the package.
//
// # Scope
//
// The registry knows no transport, no API and no orchestration: it stores
// what it is given and answers lookups. How a device is woken, which URLs
// may be contacted and what the ACS sees are decided elsewhere. Packages
// that need the registry declare the small interface they use.
package registry
