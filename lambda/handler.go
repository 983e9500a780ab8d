// Package lambda is the resolver: an http.Handler that answers a request for
// an original that left the web host with a 302 to a short-lived presigned S3
// URL (GET for a GET, HEAD for a HEAD), or, with Config.CDN, to a CloudFront
// signed URL for the same object. The bucket stays private; access control
// goes here.
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
	// life when the credentials say when they end (an assumed role, SSO, a
	// container or instance role). Temporary credentials end, and with them
	// every URL they signed. Under Lambda they come from environment
	// variables that carry no expiry, so there is nothing to cut to: see
	// Handler.life.
	credentialMargin = time.Minute
)

// Time limits of one request.
const (
	// ledgerTimeout bounds the ledger look-up, SDK retries included, well
	// inside the function's 5 s Timeout (template.yaml). A consistent
	// GetItem takes milliseconds; one that is still waiting after 2 s is a
	// throttled or unreachable table, and the visitor is better served by
	// our 503 with Retry-After (and a log line saying why) than by Lambda
	// cutting the invocation off into a bare 502.
	ledgerTimeout = 2 * time.Second
	// retryAfter is the Retry-After of every 503, in seconds: what makes
	// one (a slow or throttled ledger, credentials about to end) passes in
	// seconds, and a reload a few seconds later should work.
	retryAfter = "5"
)

// octetStream is the type an original that is not inlineSafe is served as,
// together with an attachment disposition: the browser saves it instead of
// rendering it in the bucket's origin.
const octetStream = "application/octet-stream"

// presigner is what the handler needs from S3; *s3.PresignClient has it.
// HEAD needs its own: the method is part of a SigV4 signature, so a URL
// signed for GET answers a HEAD with 403.
type presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
	PresignHeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
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
	// CDN, when set, sends visitors to CloudFront with a signed URL
	// instead of to S3 with a presigned one; everything before the
	// signing (the access check, the ledger, the type allowlist) is the
	// same.
	CDN *CDN
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
	if c.CDN != nil {
		if err := c.CDN.validate(); err != nil {
			errs = append(errs, fmt.Errorf("cdn: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Handler is the resolver. Build it with NewHandler.
type Handler struct {
	cfg           Config
	presign       presigner
	ledger        offload.ItemGetter      // nil when Verify is false
	ledgerTimeout time.Duration           // ledgerTimeout; tests shorten it
	creds         aws.CredentialsProvider // nil: expiry is not clamped
	now           func() time.Time
	window        time.Duration // see signWindow
	cache         windowCache   // the window's URLs and ledger answers
}

// NewHandler checks the configuration and builds the handler on clients
// made once per process (per Lambda cold start). creds, when not nil, are
// the presigner's credentials: when they report an expiry, every URL is cut
// to end before it (see Handler.life for when they do not).
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
	h := &Handler{cfg: cfg, presign: presign, ledgerTimeout: ledgerTimeout, creds: creds, now: time.Now, window: signWindow(cfg.Expiry)}
	if cfg.Verify {
		h.ledger = db
	}
	return h, nil
}

// ServeHTTP answers GET and HEAD for URLPrefix+NAME with a 302 to a
// presigned URL on the bucket's own endpoint (with CDN set, a CloudFront
// signed URL on CDN.BaseURL), and everything else with a short plain-text
// refusal.
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

	tg := target{method: r.Method, key: key}
	contentType := ""
	if h.ledger != nil {
		rec, err := h.lookUp(r.Context(), key)
		switch {
		case errors.Is(err, offload.ErrNotFound):
			return refuse(w, r, http.StatusNotFound, "not found"), key
		case err != nil:
			h.cfg.Logger.Error("ledger look-up failed", "key", key, "err", err)
			return refuse(w, r, http.StatusServiceUnavailable, "temporarily unavailable"), key
		}
		if rec.gone {
			// Erased: nothing is signed for it, whatever S3 still holds.
			return refuse(w, r, http.StatusGone, "gone"), key
		}
		// The version the agent proved and recorded: a later write under
		// the same key, by anyone, cannot change what visitors get.
		tg.versionID = rec.versionID
		contentType = rec.contentType
	}
	if contentType == "" {
		// No ledger (or an item without a type): the rule the agent
		// stores objects with.
		contentType = mime.TypeByExtension(path.Ext(rel))
	}
	// The resolver, not the stored object, decides how the browser sees
	// the original.
	mt, safe := inlineType(contentType)
	if safe {
		tg.contentType = mt
	} else {
		tg.contentType = octetStream
	}
	if !safe || r.URL.Query().Get("download") == "1" {
		tg.disposition = mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(rel)})
	}

	now := h.now()
	window := now.Truncate(h.window)
	life, err := h.life(r.Context(), window, now)
	if err != nil {
		h.cfg.Logger.Error("credentials", "err", err)
		return refuse(w, r, http.StatusServiceUnavailable, "temporarily unavailable"), key
	}
	ck := urlCacheKey{target: tg, accessKeyID: life.accessKeyID, life: life.d}
	if h.cfg.CDN != nil {
		// A canned policy names the URL and its end, not the method
		// (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html),
		// so one URL serves a GET and a HEAD; the behaviour allows both.
		ck.method = ""
	}
	location, ok := h.cache.url(window, ck)
	if !ok {
		location, err = h.sign(r.Context(), tg, window, life.d)
		if err != nil {
			h.cfg.Logger.Error("presign failed", "key", key, "err", err)
			return refuse(w, r, http.StatusInternalServerError, "internal error"), key
		}
		h.cache.putURL(window, ck, location)
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

// lookUp is the ledger's answer for key: the recorded item (gone when it is
// a tombstone), or offload.ErrNotFound. An answer already read in this signing window is
// taken from the window's cache (a "not found" only within notFoundTTL);
// otherwise it is a consistent GetItem given at most ledgerTimeout, and
// the answer, but never an error, is kept for the next requests.
func (h *Handler) lookUp(ctx context.Context, key string) (recorded, error) {
	// Taken before the look-up, so a cached answer is never kept longer
	// than its window, or notFoundTTL, from when it was asked for.
	now := h.now()
	window := now.Truncate(h.window)
	if rec, found, cached := h.cache.answer(window, now, key); cached {
		if !found {
			return recorded{}, offload.ErrNotFound
		}
		return rec, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.ledgerTimeout)
	defer cancel()
	item, err := offload.GetRecord(ctx, h.ledger, h.cfg.Table, key)
	switch {
	case errors.Is(err, offload.ErrNotFound):
		h.cache.putMiss(window, now.Add(notFoundTTL), key)
		return recorded{}, err
	case err != nil:
		return recorded{}, err
	}
	rec := recorded{versionID: item.VersionID, contentType: item.ContentType, gone: item.Erased()}
	h.cache.putRecord(window, key, rec)
	return rec, nil
}

// target is what one presigned URL grants: the method, the object (and
// version), and how S3 must present it.
type target struct {
	method      string // http.MethodGet or http.MethodHead
	key         string
	versionID   string // empty: the current version
	contentType string // response-content-type
	disposition string // response-content-disposition; empty: none
}

// sign presigns t at the start of the window, for life; with the CDN on,
// it signs t's CloudFront URL to end at the same time.
func (h *Handler) sign(ctx context.Context, t target, window time.Time, life time.Duration) (string, error) {
	if h.cfg.CDN != nil {
		return h.signCDN(t, window.Add(life))
	}
	opts := []func(*s3.PresignOptions){s3.WithPresignExpires(life), func(o *s3.PresignOptions) {
		o.Presigner = signedAt{HTTPPresignerV4: o.Presigner, at: window}
	}}
	var (
		signed *v4.PresignedHTTPRequest
		err    error
	)
	if t.method == http.MethodHead {
		signed, err = h.presign.PresignHeadObject(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(h.cfg.Bucket), Key: aws.String(t.key), VersionId: optional(t.versionID),
			ResponseContentType: optional(t.contentType), ResponseContentDisposition: optional(t.disposition),
		}, opts...)
	} else {
		signed, err = h.presign.PresignGetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(h.cfg.Bucket), Key: aws.String(t.key), VersionId: optional(t.versionID),
			ResponseContentType: optional(t.contentType), ResponseContentDisposition: optional(t.disposition),
		}, opts...)
	}
	if err != nil {
		return "", fmt.Errorf("presign %s %s: %w", t.method, t.key, err)
	}
	return signed.URL, nil
}

// optional is nil for "", so the SDK leaves the parameter out.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// inlineType reports whether an original of this content type may be shown
// inline from the bucket's origin, and the bare media type to serve it as:
// image/*, video/* and application/pdf, which a browser displays but does
// not run. SVG is an image that runs script, so no image type that is SVG or
// XML counts. Everything else (HTML, XML, JavaScript, text, unknown, a value
// that does not parse) is not safe: rendered in the bucket's origin, it could
// act in that origin's name. Parameters are dropped, so nothing but the
// checked media type reaches the browser.
func inlineType(contentType string) (string, bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", false
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || sub == "" {
		return "", false
	}
	switch typ {
	case "image":
		return mt, !strings.Contains(sub, "svg") && !strings.HasSuffix(sub, "xml")
	case "video":
		return mt, true
	}
	return mt, mt == "application/pdf"
}

// urlLife is how long a URL signed at the start of a window lives, and by
// which credentials it is signed.
type urlLife struct {
	d           time.Duration
	accessKeyID string
}

// life is the configured expiry, counted from the window's start, and cut
// to end a margin before the signing credentials do when they report an end
// (CanExpire). Under Lambda they do not: the SDK reads the execution role's
// credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN,
// which carry no expiry, and AWS documents no minimum life for them. There a
// URL may end before X-Amz-Expires says (S3 refuses a URL whose session has
// ended); the template's bound on PresignExpiry keeps that window short.
func (h *Handler) life(ctx context.Context, window, now time.Time) (urlLife, error) {
	l := urlLife{d: h.cfg.Expiry}
	if h.creds == nil || h.cfg.CDN != nil {
		// A CloudFront URL is signed with the site's key, not the role's
		// credentials (CloudFront's own OAC signs its request to S3), so
		// their end does not end it.
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

// refuse writes a short plain-text answer (no body for HEAD). A 503 always
// says when to come back.
func refuse(w http.ResponseWriter, r *http.Request, status int, msg string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
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
