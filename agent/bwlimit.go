package agent

import (
	"bytes"
	"context"
	"io"

	"golang.org/x/time/rate"
)

// bwBurst is how many bytes may go out at once under a bandwidth limit:
// small, so the limit holds over fractions of a second too, and large
// enough that waiting costs little per byte.
const bwBurst = 64 << 10

// newBandwidth returns a limiter for bytesPerSecond shared by every upload,
// or nil when there is no limit.
func newBandwidth(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSecond), bwBurst)
}

// partBody is the body of a PutObject or UploadPart. As the HTTP client
// reads it, it takes its bytes from the shared bandwidth limiter (if any)
// and reports how far the request got (if asked). It seeks like the
// bytes.Reader it wraps, so the SDK can rewind it to retry a call: a
// rewind takes back the bytes reported, and a retried byte counts against
// the limit again, since it crosses the link again.
type partBody struct {
	// Embedded, so its WriteTo serves what copies the body to hash it
	// (the SDK signing over plain HTTP), unthrottled and uncounted; the
	// HTTP client sends it through Read.
	*bytes.Reader
	ctx      context.Context
	limiter  *rate.Limiter     // nil: no limit
	sent     func(delta int64) // nil: nobody asks
	reported int64             // the position reported through sent
}

// body wraps buf for a PutObject or UploadPart of u.
func (s *s3Store) body(ctx context.Context, buf []byte, u upload) io.ReadSeeker {
	return &partBody{Reader: bytes.NewReader(buf), ctx: ctx, limiter: s.bandwidth, sent: u.sent}
}

func (b *partBody) Read(p []byte) (int, error) {
	if b.limiter != nil && len(p) > bwBurst {
		p = p[:bwBurst]
	}
	n, err := b.Reader.Read(p)
	if n > 0 && b.limiter != nil {
		if werr := b.limiter.WaitN(b.ctx, n); werr != nil {
			return n, werr
		}
	}
	if n > 0 {
		b.reported += int64(n)
		if b.sent != nil {
			b.sent(int64(n))
		}
	}
	return n, err
}

// Seek seeks; a rewind below what was reported (to retry) takes it back.
// A seek forward (to measure the length) is not sending.
func (b *partBody) Seek(offset int64, whence int) (int64, error) {
	pos, err := b.Reader.Seek(offset, whence)
	if err == nil && pos < b.reported {
		if b.sent != nil {
			b.sent(pos - b.reported)
		}
		b.reported = pos
	}
	return pos, err
}
