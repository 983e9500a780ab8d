package lambda

import (
	"errors"
	"net/http"
	"time"

	"github.com/photosleeve/offload"
)

// AccessControl decides, before anything is presigned, whether a request may
// have the original rel (its path relative to the watch folder). An error
// is answered with 403.
type AccessControl interface {
	Authorize(r *http.Request, rel string) error
}

// AllowAll lets every request through: the site's originals are as public as
// its /static/ URLs were before they moved to S3.
type AllowAll struct{}

// Authorize always allows.
func (AllowAll) Authorize(*http.Request, string) error { return nil }

// SignedLinks requires a link signed with Key (see offload.SignLink): the
// query carries exp (Unix time) and sig (hex HMAC-SHA256); checked in
// constant time, refused once expired.
type SignedLinks struct {
	Key []byte
	Now func() time.Time // default time.Now
}

// Authorize checks the link's signature and expiry.
func (s SignedLinks) Authorize(r *http.Request, rel string) error {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	q := r.URL.Query()
	return offload.VerifyLink(s.Key, rel, q.Get("exp"), q.Get("sig"), now())
}

var (
	_ AccessControl = AllowAll{}
	_ AccessControl = SignedLinks{}
)

// publicReason is what a 403 may tell the visitor: that the link expired,
// or that it is not valid; never more.
func publicReason(err error) string {
	if errors.Is(err, offload.ErrLinkExpired) {
		return "link expired"
	}
	return "invalid link"
}
