//go:build race

package nbio

// raceEnabled: built with -race (see rawOp.syscall).
const raceEnabled = true
