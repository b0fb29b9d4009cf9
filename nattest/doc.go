// Package nattest holds the tests that cross a real Linux NAT: a
// simulated TR-111 CPE in one network namespace, a router namespace doing
// nftables masquerade with conntrack, and the relay's STUN server on the
// public side. They need root, iproute2 and nftables; elsewhere they skip
// with the reason (and fail under CI=true, which installs both).
package nattest
