package lambda

import (
	"context"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Signing windows. A presigned URL depends on the signing time, so signing
// every request at "now" gives every request a new URL and costs the SDK's
// whole request pipeline each time (about 50 µs and 350 allocations). The
// resolver instead signs at the start of the current window: within one
// window every request for the same object gets the same URL, signed once
// and then served from memory. The price is a URL that ends up to one window
// sooner than the configured expiry, so the window is a small part of it.
const (
	maxSignWindow = time.Minute
	// windowsPerExpiry: the window is at most this part of the expiry, so
	// a URL lives at least 14/15 of it (15 min → 1 min windows).
	windowsPerExpiry = 15
	// maxCachedEntries bounds each of the window cache's maps (see
	// windowCache); past it that map starts over, and a request then only
	// costs a signature, or a ledger look-up, again.
	maxCachedEntries = 10000
)

func signWindow(expiry time.Duration) time.Duration {
	return max(min(maxSignWindow, expiry/windowsPerExpiry), time.Second)
}

// signedAt is the SDK's presigner with the signing time fixed to the start
// of the window.
type signedAt struct {
	s3.HTTPPresignerV4
	at time.Time
}

func (s signedAt) PresignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string,
	_ time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return s.HTTPPresignerV4.PresignHTTP(ctx, creds, r, payloadHash, service, region, s.at, optFns...)
}
