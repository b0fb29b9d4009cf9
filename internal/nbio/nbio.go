// Package nbio is the socket I/O under the XMPP broker and the
// simulator's XMPP fleet: an edge-triggered epoll poller whose idle
// sockets cost no goroutine; Conn, a socket whose reads and writes are
// raw system calls that allocate nothing (TryRead and TryWrite never
// wait, Read and Write wait through Go's netpoller); and a follower of
// the TLS record framing of a byte stream that tells a reader when
// tls.Conn can hold nothing more, so that it can skip the read that
// would only hear the socket is empty.
//
// A goroutine parked on a socket costs a stack and, on every arrival, a
// wake-up through the runtime's netpoller. For tens of thousands of
// mostly idle TLS sessions, each answering one small stanza now and then,
// both the memory and the hand-overs dominate; nbio lets a few goroutines
// read and answer every session themselves.
package nbio

import (
	"errors"
	"net"
	"sync/atomic"
)

// ErrUnsupported: no epoll on this system.
var ErrUnsupported = errors.New("nbio: needs Linux epoll")

// ErrNotSocket: NewConn was given a connection that is not a socket.
var ErrNotSocket = errors.New("nbio: not a socket")

// wouldBlockError is what Read returns when the socket is empty. It is a
// net.Error that reports itself temporary: crypto/tls keeps a partly read
// record buffered and leaves the connection usable after a temporary read
// error (it poisons it only for other errors), so the next Read, once the
// socket is readable again, carries on where this one stopped.
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "nbio: read would block" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

// ErrWouldBlock: the socket is empty.
var ErrWouldBlock net.Error = wouldBlockError{}

// RecordHeaderLen is the length of a TLS record header: type, version,
// length (RFC 8446 5.1, RFC 5246 6.2.1).
const RecordHeaderLen = 5

// Records follows the TLS record framing of the bytes read from a
// connection, as they are handed to tls.Conn.
type Records struct {
	hdr  [RecordHeaderLen]byte
	hdrN int // bytes of hdr read
	body int // bytes left of the record whose header was read
	n    int // records completed since Reset
}

// Track follows the framing over b, the next bytes read.
func (r *Records) Track(b []byte) {
	for len(b) > 0 {
		if r.body > 0 {
			k := min(r.body, len(b))
			r.body -= k
			b = b[k:]
			if r.body == 0 {
				r.n++
			}
			continue
		}
		k := copy(r.hdr[r.hdrN:], b)
		r.hdrN += k
		b = b[k:]
		if r.hdrN == RecordHeaderLen {
			r.hdrN = 0
			r.body = int(r.hdr[3])<<8 | int(r.hdr[4])
			if r.body == 0 {
				r.n++
			}
		}
	}
}

// Restart forgets the framing: the next byte read starts a record. A
// stream that begins in the clear and continues in TLS (STARTTLS) calls
// it when TLS starts, or the clear text would be taken for records.
func (r *Records) Restart() { *r = Records{} }

// Reset starts counting completed records anew.
func (r *Records) Reset() { r.n = 0 }

// Completed returns how many records were completed since Reset.
func (r *Records) Completed() int { return r.n }

// AtBoundary reports that the bytes read so far end with a whole record.
func (r *Records) AtBoundary() bool { return r.body == 0 && r.hdrN == 0 }

// OneWholeRecord reports, for a reader that called Reset before a
// tls.Conn.Read that returned data without filling its buffer, and whose
// last read from the socket was short, that tls.Conn holds nothing more
// and the socket is empty. That is so when the Read took exactly one
// whole record: tls.Conn consumed it to return data (a Read returns data
// from one record at a time and only reads more when it has none), so no
// byte of it, or of a record after it, is left in tls.Conn's buffers; and
// a short read means the socket's queue was empty. Bytes arriving after
// that read are reported by an edge-triggered poller.
func (r *Records) OneWholeRecord(lastReadShort bool) bool {
	return lastReadShort && r.n == 1 && r.AtBoundary()
}

// Reader hands a socket to one reader at a time, without a lock, across
// the goroutines that hear of its events: a poller, and whoever reads it
// first. An event for a socket being read does not start a second
// reader; it tells the reader in place to read once more before it lets
// go, so that no arrival is missed in between.
//
//	if r.Claim() {     // on an event
//		for {
//			r.Begin()
//			... read until empty ...
//			if !r.Release() {
//				break
//			}
//		}
//	}
type Reader struct{ busy, again atomic.Bool }

// Take makes the caller the reader, for a socket no one reads yet.
func (r *Reader) Take() { r.busy.Store(true) }

// Claim records an event and reports whether the caller became the
// reader; if not, the reader in place will read again.
func (r *Reader) Claim() bool {
	r.again.Store(true)
	return r.busy.CompareAndSwap(false, true)
}

// Begin starts a pass of the reader over the socket.
func (r *Reader) Begin() { r.again.Store(false) }

// Release lets go after a pass, and reports whether an event came during
// it and the caller is the reader again: it must make another pass.
func (r *Reader) Release() bool {
	r.busy.Store(false)
	return r.again.Load() && r.busy.CompareAndSwap(false, true)
}
