// Package lambda is the resolver: an http.Handler that answers a request for
// an original that left the web host with a 302 to a short-lived presigned S3
// GET URL. The bucket stays private; access control goes here.
//
// The handler is plain net/http. The command offload-resolver serves it over
// local HTTP, or, under Lambda, adapts Function URL events to it (see
// FunctionURLHandler).
package lambda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
)

// Defaults and limits of the presigned URLs.
const (
	// DefaultExpiry: long enough to start a download of a large original
	// on a slow link (S3 checks the signature once, at the start), short
	// enough that a leaked URL soon stops working.
	DefaultExpiry = 15 * time.Minute
	// maxExpiry is SigV4's own limit for a presigned URL.
	maxExpiry = 7 * 24 * time.Hour
	// credentialMargin keeps a URL's life inside the signing credentials'
	// life: a Lambda role's temporary credentials end, and with them
	// every URL they signed.
	credentialMargin = time.Minute
)

// presigner is what the handler needs from S3; *s3.PresignClient has it.
type presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

var _ presigner = (*s3.PresignClient)(nil)

// Config is the resolver's configuration; main fills it in.
type Config struct {
	Mapping offload.Mapping
	Bucket  string
	Table   string        // ledger table; required when Verify is true
	Verify  bool          // look the key up in the ledger first: unknown keys get 404
	Expiry  time.Duration // life of a presigned URL (zero: DefaultExpiry)
	Access  AccessControl // default AllowAll
	Logger  *slog.Logger
}

// Validate refuses a configuration the resolver cannot serve with.
func (c Config) Validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket: required (OFFLOAD_BUCKET)"))
	}
	if c.Verify && c.Table == "" {
		errs = append(errs, errors.New("table: required with OFFLOAD_VERIFY=ledger (OFFLOAD_TABLE)"))
	}
	if err := c.Mapping.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("prefixes: %w", err))
	}
	if c.Expiry < 0 || c.Expiry > maxExpiry { // zero: DefaultExpiry
		errs = append(errs, fmt.Errorf("expiry: %s is outside (0, %s]", c.Expiry, maxExpiry))
	}
	return errors.Join(errs...)
}

// Handler is the resolver. Build it with NewHandler.
type Handler struct {
	cfg     Config
	presign presigner
	ledger  offload.ItemGetter      // nil when Verify is false
	creds   aws.CredentialsProvider // nil: expiry is not clamped
	now     func() time.Time
	window  time.Duration // see signWindow
	urls    urlCache
}

// NewHandler checks the configuration and builds the handler on clients
// made once per process (per Lambda cold start). creds, when not nil, are
// the presigner's credentials, used to keep every URL inside their life.
func NewHandler(cfg Config, presign *s3.PresignClient, db offload.ItemGetter, creds aws.CredentialsProvider) (*Handler, error) {
	if cfg.Expiry == 0 {
		cfg.Expiry = DefaultExpiry
	}
	if cfg.Access == nil {
		cfg.Access = AllowAll{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, presign: presign, creds: creds, now: time.Now, window: signWindow(cfg.Expiry)}
	if cfg.Verify {
		h.ledger = db
	}
	return h, nil
}

// ServeHTTP answers GET and HEAD for URLPrefix+NAME with a 302 to a
// presigned URL on the bucket's own endpoint, and everything else with a
// short plain-text refusal.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	status, key := h.serve(w, r)
	h.cfg.Logger.Info("request", "method", r.Method, "path", truncate(requestPath(r), 300),
		"status", status, "key", key, "duration", h.now().Sub(start).Round(time.Microsecond))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (status int, key string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return refuse(w, r, http.StatusMethodNotAllowed, "method not allowed"), ""
	}
	p := requestPath(r)
	if !strings.HasPrefix(p, h.cfg.Mapping.URLPrefix) {
		return refuse(w, r, http.StatusNotFound, "not found"), ""
	}
	key, err := h.cfg.Mapping.KeyForURL(p)
	if err != nil {
		return refuse(w, r, http.StatusBadRequest, "bad path"), ""
	}
	rel, _ := h.cfg.Mapping.FileForKey(key)
	if err := h.cfg.Access.Authorize(r, rel); err != nil {
		return refuse(w, r, http.StatusForbidden, "forbidden: "+publicReason(err)), key
	}

	in := &s3.GetObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(key)}
	if h.ledger != nil {
		rec, err := offload.GetRecord(r.Context(), h.ledger, h.cfg.Table, key)
		switch {
		case errors.Is(err, offload.ErrNotFound):
			return refuse(w, r, http.StatusNotFound, "not found"), key
		case err != nil:
			h.cfg.Logger.Error("ledger look-up failed", "key", key, "err", err)
			return refuse(w, r, http.StatusServiceUnavailable, "temporarily unavailable"), key
		}
		if rec.ContentType != "" {
			in.ResponseContentType = aws.String(rec.ContentType)
		}
	}
	if r.URL.Query().Get("download") == "1" {
		in.ResponseContentDisposition = aws.String(mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(rel)}))
	}
	now := h.now()
	window := now.Truncate(h.window)
	life, err := h.life(r.Context(), window, now)
	if err != nil {
		h.cfg.Logger.Error("credentials", "err", err)
		return refuse(w, r, http.StatusServiceUnavailable, "temporarily unavailable"), key
	}
	ck := urlCacheKey{key: key, contentType: aws.ToString(in.ResponseContentType), disposition: aws.ToString(in.ResponseContentDisposition),
		accessKeyID: life.accessKeyID, life: life.d}
	location, ok := h.urls.get(window, ck)
	if !ok {
		signed, err := h.presign.PresignGetObject(r.Context(), in, s3.WithPresignExpires(life.d), func(o *s3.PresignOptions) {
			o.Presigner = signedAt{HTTPPresignerV4: o.Presigner, at: window}
		})
		if err != nil {
			h.cfg.Logger.Error("presign failed", "key", key, "err", err)
			return refuse(w, r, http.StatusInternalServerError, "internal error"), key
		}
		location = signed.URL
		h.urls.put(window, ck, location)
	}
	w.Header().Set("Location", location)
	// The browser may reuse the redirect while the URL is surely still
	// valid: a fifth of the life it has left. private: a shared cache must
	// not hand one visitor's signed URL (and access decision) to another.
	left := window.Add(life.d).Sub(now)
	w.Header().Set("Cache-Control", "private, max-age="+strconv.Itoa(int(left/5/time.Second)))
	w.WriteHeader(http.StatusFound)
	return http.StatusFound, key
}

// urlLife is how long a URL signed at the start of a window lives, and by
// which credentials it is signed.
type urlLife struct {
	d           time.Duration
	accessKeyID string
}

// life is the configured expiry, counted from the window's start, and cut
// to end a margin before the signing credentials do.
func (h *Handler) life(ctx context.Context, window, now time.Time) (urlLife, error) {
	l := urlLife{d: h.cfg.Expiry}
	if h.creds == nil {
		return l, nil
	}
	c, err := h.creds.Retrieve(ctx)
	if err != nil {
		return urlLife{}, err
	}
	l.accessKeyID = c.AccessKeyID
	if c.CanExpire {
		end := c.Expires.Add(-credentialMargin)
		if end.Sub(now) < time.Second {
			return urlLife{}, fmt.Errorf("credentials expire at %s", c.Expires)
		}
		// Whole seconds, as X-Amz-Expires counts them, never past the end.
		l.d = min(l.d, end.Sub(window).Truncate(time.Second))
	}
	return l, nil
}

// requestPath is the path as the client sent it. r.URL.EscapedPath() is not
// enough: when the raw path holds a byte that needs escaping (a space, raw
// UTF-8), net/url drops the raw form and re-encodes the decoded path, which
// turns an encoded slash ("%2F") into a real one.
func requestPath(r *http.Request) string {
	if p := r.RequestURI; strings.HasPrefix(p, "/") {
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		return p
	}
	return r.URL.EscapedPath()
}

// refuse writes a short plain-text answer (no body for HEAD).
func refuse(w http.ResponseWriter, r *http.Request, status int, msg string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintln(w, msg)
	}
	return status
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
