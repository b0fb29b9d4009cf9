package xmpp

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crrelay/crrelay/internal/nbio"
)

// errWouldBlock is what nbConn.Read returns, in non-blocking mode, when
// the socket is empty.
var errWouldBlock = nbio.ErrWouldBlock

// nbConn is the connection under a session's tls.Conn. During negotiation
// it reads and writes like a net.Conn (nbio.Conn: waiting, with
// deadlines). Once the session is bound it never waits: a read of an
// empty socket returns errWouldBlock, so that the reader can leave the
// session to the poller, and what a full socket does not take is kept
// (out) and sent when the poller reports room, so that no goroutine ever
// waits on a client that does not read. The sweeper closes a session
// whose socket has taken none of them for WriteTimeout, and a write that
// would keep more than maxBacklog bytes fails.
//
// It also follows the TLS record framing of the bytes it hands to
// tls.Conn, which lets a reader skip the read that would only find the
// socket empty (see drained).
type nbConn struct {
	*nbio.Conn
	pre      []byte // bytes read before TLS started, to be read first
	nonblock bool

	// The TLS records read so far, and whether the last read from the
	// socket left room in the buffer it filled (see drained).
	records nbio.Records
	short   bool

	// Bytes written but not yet taken by the socket, in order; nil when
	// none. outSince is when the socket last took some, or refused the
	// first (unix nanoseconds; 0 when out is empty), read by the sweeper.
	// omu guards out through each write and flush: the session's wmu
	// does not cover every write, as tls.Conn also writes from inside
	// Read (an alert, or the answer to a client's KeyUpdate) while the
	// poller may be flushing.
	omu      sync.Mutex
	out      *[]byte
	outSince atomic.Int64
}

// maxBacklog bounds the bytes a session keeps for a socket that does not
// take them (beyond what the kernel buffers): a client that stops reading
// while stanzas keep coming for it is dropped rather than allowed to grow
// the broker's memory.
const maxBacklog = 256 << 10

// errBacklog: a write would keep more than maxBacklog bytes waiting.
var errBacklog = errors.New("xmpp: client not reading: write backlog full")

// Write sends p, or, once bound, keeps what the socket does not take to
// be sent by flush; it reports len(p) written either way.
func (c *nbConn) Write(p []byte) (int, error) {
	if !c.nonblock {
		return c.Conn.Write(p)
	}
	c.omu.Lock()
	defer c.omu.Unlock()
	if c.out != nil {
		if len(*c.out)+len(p) > maxBacklog {
			return 0, errBacklog
		}
		*c.out = append(*c.out, p...)
		return len(p), nil
	}
	n, err := c.TryWrite(p)
	if err != nil {
		return n, err
	}
	if rest := p[n:]; len(rest) > 0 {
		if len(rest) > maxBacklog {
			return n, errBacklog
		}
		c.out = backlogBufs.Get().(*[]byte)
		*c.out = append((*c.out)[:0], rest...)
		c.outSince.Store(time.Now().UnixNano())
	}
	return len(p), nil
}

// flush sends what out holds, as much as the socket takes.
func (c *nbConn) flush() error {
	c.omu.Lock()
	defer c.omu.Unlock()
	if c.out == nil {
		return nil
	}
	b := *c.out
	n, err := c.TryWrite(b)
	if err != nil {
		return err
	}
	if n < len(b) {
		*c.out = b[:copy(b, b[n:])]
		if n > 0 {
			c.outSince.Store(time.Now().UnixNano())
		}
		return nil
	}
	if cap(b) <= 64<<10 {
		*c.out = b[:0]
		backlogBufs.Put(c.out)
	}
	c.out = nil
	c.outSince.Store(0)
	return nil
}

// stalledSince reports whether the socket has held back bytes since
// before cutoff (unix nanoseconds).
func (c *nbConn) stalledSince(cutoff int64) bool {
	t := c.outSince.Load()
	return t != 0 && t < cutoff
}

// backlogBufs hold the bytes sockets did not take.
var backlogBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (c *nbConn) Read(p []byte) (int, error) {
	var n int
	var err error
	switch {
	case len(c.pre) > 0:
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		c.short = false
	case !c.nonblock:
		n, err = c.Conn.Read(p)
		c.short = false
	default:
		n, err = c.TryRead(p)
		if err == nil && n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		c.short = n < len(p)
	}
	c.records.Track(p[:n])
	return n, err
}

// startRead is called before each tls.Conn.Read of a bound session.
func (c *nbConn) startRead() { c.records.Reset(); c.short = false }

// drained reports, after a tls.Conn.Read that returned data and left
// room in its buffer, that tls.Conn holds nothing more and the socket is
// empty, so that another Read would only cost a system call to hear it
// would block (nbio.Records.OneWholeRecord).
func (c *nbConn) drained() bool { return c.records.OneWholeRecord(c.short) }

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
