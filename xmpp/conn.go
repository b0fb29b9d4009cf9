package xmpp

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// wouldBlockError is what nbConn.Read returns, in non-blocking mode, when
// the socket is empty. It is a net.Error that reports itself temporary:
// crypto/tls keeps a partly read record buffered and leaves the
// connection usable after a temporary read error (it poisons it only for
// other errors), so the next Read, once the socket is readable again,
// carries on where this one stopped.
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "xmpp: read would block" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlockError{}

// nbConn is the connection under a session's tls.Conn. During negotiation
// it reads like the net.Conn it wraps (blocking, with deadlines); once the
// session is bound it reads without waiting, so a worker can drain the
// TLS connection and give the goroutine back as soon as the socket is
// empty, leaving the session to the poller.
type nbConn struct {
	net.Conn
	rc       syscall.RawConn
	pre      []byte // bytes read before TLS started, to be read first
	nonblock bool
}

func (c *nbConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	if !c.nonblock {
		return c.Conn.Read(p)
	}
	n, err := readNonblock(c.rc, p)
	if err == nil && n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, err
}

// errTooLarge: a negotiation element exceeded Config.MaxStanzaBytes.
var errTooLarge = errors.New("xmpp: element too large")

// byteReader is the reader negotiation hands encoding/xml. Being an
// io.ByteReader, it keeps xml.Decoder from wrapping it in a bufio.Reader
// that would swallow bytes past the element being decoded: what the
// decoder has not consumed stays here, and is handed on (to TLS after
// STARTTLS, to the session after bind). It also bounds the bytes of each
// element.
type byteReader struct {
	r        io.Reader
	buf      []byte
	pos, end int
	n, max   int   // bytes consumed since limit, and the bound
	err      error // the last read error, to report instead of a syntax error
}

func (r *byteReader) ReadByte() (byte, error) {
	if r.pos == r.end {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	if r.max > 0 && r.n >= r.max {
		return 0, errTooLarge
	}
	c := r.buf[r.pos]
	r.pos++
	r.n++
	return c, nil
}

// UnreadByte puts back the byte ReadByte just returned.
func (r *byteReader) UnreadByte() error {
	if r.pos == 0 {
		return io.ErrNoProgress
	}
	r.pos--
	r.n--
	return nil
}

// Read is there to satisfy io.Reader; xml.Decoder only calls ReadByte.
func (r *byteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}

func (r *byteReader) fill() error {
	for range 100 {
		n, err := r.r.Read(r.buf)
		r.pos, r.end = 0, n
		if n > 0 {
			return nil
		}
		if err != nil {
			r.err = err
			return err
		}
	}
	r.err = io.ErrNoProgress
	return r.err
}

// limit starts counting the bytes of a new element.
func (r *byteReader) limit(max int) { r.n, r.max = 0, max }

// rest returns the bytes read from the connection but not consumed.
func (r *byteReader) rest() []byte { return r.buf[r.pos:r.end] }

// reset makes r read from src, dropping what it held.
func (r *byteReader) reset(src io.Reader) {
	r.r, r.pos, r.end, r.err = src, 0, 0, nil
}
