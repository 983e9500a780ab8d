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

// limitedBody is a request body that takes its bytes from the shared
// limiter as the HTTP client reads it. It seeks like the bytes.Reader it
// wraps, so the SDK can rewind it to retry a call (a retried byte counts
// against the limit again: it crosses the link again).
type limitedBody struct {
	*bytes.Reader
	ctx     context.Context
	limiter *rate.Limiter
}

// body wraps buf for a PutObject or UploadPart.
func (s *s3Store) body(ctx context.Context, buf []byte) io.ReadSeeker {
	r := bytes.NewReader(buf)
	if s.bandwidth == nil {
		return r
	}
	return &limitedBody{Reader: r, ctx: ctx, limiter: s.bandwidth}
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if len(p) > bwBurst {
		p = p[:bwBurst]
	}
	n, err := b.Reader.Read(p)
	if n > 0 {
		if werr := b.limiter.WaitN(b.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
