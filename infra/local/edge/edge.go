// Package edge is a local stand-in for a CloudFront distribution in front
// of the private originals bucket, in the spirit of the stack's AWS shim:
// it follows what AWS documents for the parts the project relies on and
// fakes nothing else. Every byte it serves comes from MinIO.
//
// What it does (each part cites the page it follows):
//   - serves GET and HEAD only, as a behaviour with AllowedMethods GET,
//     HEAD; other methods get 403;
//   - requires a canned-policy signed URL from a key of its key group and
//     verifies it as documented (signedurl.go);
//   - forwards a miss to the origin, path-style, with only the cache
//     policy's whitelisted query strings, signed with SigV4 as Origin
//     Access Control signs ("always"), with the credentials the stack
//     grants the cloudfront component (the bucket policy's
//     AllowCloudFrontRead);
//   - caches 200 answers on disk by the cache policy's key for the TTL
//     the policy and the origin's Cache-Control give (policy.go); serves
//     ranges, HEAD and conditional requests from the cached copy;
//   - says X-Cache: Hit from cloudfront, Miss from cloudfront, or Error
//     from cloudfront;
//   - serves CreateInvalidation and GetInvalidation on a separate API
//     handler (api.go).
//
// What it does not do: custom policies and signed cookies, TLS to the
// viewer (https-only in the template), more than one edge location,
// caching errors (CloudFront caches some for 10 s by default; this edge
// caches none), revalidating an expired object with a conditional
// request (it fetches it again), origin failover, compression, logs.
package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Config is what an Edge needs; New checks it.
type Config struct {
	// Origin is the S3 endpoint (MinIO, or the AWS shim in front of it),
	// addressed path-style: an object is Origin/Bucket/KEY.
	Origin string
	Bucket string
	Region string
	// Credentials sign the requests to the origin (Origin Access Control).
	Credentials aws.CredentialsProvider
	// Transport carries the requests to the origin; nil is
	// http.DefaultTransport.
	Transport http.RoundTripper
	// KeyGroup is the behaviour's trusted key group.
	KeyGroup KeyGroup
	// Policy is the behaviour's cache policy.
	Policy CachePolicy
	// CacheDir holds the cached bodies; it is created if missing.
	CacheDir string
	// DistributionID is the one distribution the API answers for.
	DistributionID string
	// APIAccessKeys are the access keys the API accepts.
	APIAccessKeys []string
	// Logger gets one line per refused or missed request; nil discards.
	Logger *slog.Logger
	// Now is the clock for Expires and TTLs; nil is time.Now.
	Now func() time.Time
}

// Edge is a distribution: its ServeHTTP answers viewers, its API answers
// CloudFront API calls. Safe for concurrent use.
type Edge struct {
	cfg    Config
	origin *url.URL
	client *http.Client
	signer *v4.Signer
	cache  *diskCache
	api    *api
	log    *slog.Logger
	now    func() time.Time
}

// New checks cfg and returns an Edge with an empty cache.
func New(cfg Config) (*Edge, error) {
	switch {
	case cfg.Origin == "" || cfg.Bucket == "" || cfg.Region == "":
		return nil, errors.New("edge: Origin, Bucket and Region are required")
	case cfg.Credentials == nil:
		return nil, errors.New("edge: Credentials are required (Origin Access Control always signs)")
	case len(cfg.KeyGroup) == 0:
		return nil, errors.New("edge: the key group is empty")
	case cfg.CacheDir == "":
		return nil, errors.New("edge: CacheDir is required")
	case cfg.DistributionID == "":
		return nil, errors.New("edge: DistributionID is required")
	}
	origin, err := url.Parse(strings.TrimSuffix(cfg.Origin, "/"))
	if err != nil || (origin.Scheme != "http" && origin.Scheme != "https") {
		return nil, fmt.Errorf("edge: Origin %q: want an http(s) URL", cfg.Origin)
	}
	cache, err := newDiskCache(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e := &Edge{cfg: cfg, origin: origin, cache: cache, log: cfg.Logger, now: cfg.Now,
		client: &http.Client{Transport: cfg.Transport,
			// The origin's redirects are the viewer's business, as on CloudFront.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		// S3 wants the path signed as sent, not escaped a second time.
		signer: v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.api = newAPI(cfg.DistributionID, cfg.APIAccessKeys, cache, e.now, e.log)
	return e, nil
}

// API returns the handler of the CloudFront API endpoint.
func (e *Edge) API() http.Handler { return e.api }

// The X-Cache values CloudFront sends.
const (
	xCacheHit   = "Hit from cloudfront"
	xCacheMiss  = "Miss from cloudfront"
	xCacheError = "Error from cloudfront"
)

// ServeHTTP answers a viewer.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// "CloudFront returns a 403 (Invalid method) error if you're trying to
	// use an HTTP method that you haven't specified in the CloudFront
	// distribution":
	// https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/http-403-invalid-method.html
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		e.log.Info("refused", "method", r.Method, "path", r.URL.Path, "why", "method not allowed")
		w.Header().Set("X-Cache", xCacheError)
		http.Error(w, "403 ERROR: This distribution is not configured to allow the HTTP request method that was used for this request. The distribution supports only cachable requests.", http.StatusForbidden)
		return
	}
	now := e.now()
	if d := e.cfg.KeyGroup.verify(r, now); d != nil {
		e.log.Info("refused", "method", r.Method, "path", r.URL.Path, "code", d.code, "why", d.why)
		writeDenial(w, r, d)
		return
	}
	key, err := e.cfg.Policy.keyOf(r)
	if err != nil {
		writeDenial(w, r, accessDenied("query: "+err.Error()))
		return
	}
	if ent := e.cache.get(key, now); ent != nil && e.serveEntry(w, r, ent, xCacheHit) {
		return
	}
	fill := e.cache.fillLock(key)
	fill.Lock()
	defer fill.Unlock()
	if ent := e.cache.get(key, e.now()); ent != nil && e.serveEntry(w, r, ent, xCacheHit) {
		return // filled by the request that held the lock
	}
	e.miss(w, r, key)
}

// writeDenial sends CloudFront's error document for a refused viewer.
func writeDenial(w http.ResponseWriter, r *http.Request, d *denial) {
	body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		"<Error><Code>" + d.code + "</Code><Message>" + d.message + "</Message></Error>"
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("X-Cache", xCacheError)
	w.WriteHeader(d.status)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// passedHeaders are the origin's headers the edge keeps with a cached
// object and sends on; Content-Length and the range headers are the
// edge's own (http.ServeContent).
var passedHeaders = []string{"Content-Type", "ETag", "Last-Modified", "Cache-Control", "Expires",
	"Content-Disposition", "Content-Encoding", "Content-Language"}

// miss fetches key from the origin and answers the viewer with it. A 200
// is cached for its TTL; anything else is passed on and not cached.
func (e *Edge) miss(w http.ResponseWriter, r *http.Request, key cacheKey) {
	resp, err := e.fetch(r.Context(), key)
	if err != nil {
		e.log.Warn("origin unreachable", "key", key.String(), "err", err)
		w.Header().Set("X-Cache", xCacheError)
		http.Error(w, "502 ERROR: CloudFront wasn't able to connect to the origin.", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.log.Info("origin error passed on, not cached", "key", key.String(), "status", resp.StatusCode)
		for _, h := range []string{"Content-Type", "Content-Length"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.Header().Set("X-Cache", xCacheError)
		w.WriteHeader(resp.StatusCode)
		if r.Method != http.MethodHead {
			io.Copy(w, resp.Body)
		}
		return
	}
	ent, err := e.store(key, resp)
	if err != nil {
		e.log.Warn("cache fill failed", "key", key.String(), "err", err)
		w.Header().Set("X-Cache", xCacheError)
		http.Error(w, "502 ERROR: reading the origin's answer failed.", http.StatusBadGateway)
		return
	}
	if !e.serveEntry(w, r, ent, xCacheMiss) {
		http.Error(w, "500 ERROR: the cached copy vanished.", http.StatusInternalServerError)
	}
}

// fetch sends the origin request for key: GET /BUCKET/PATH?WHITELISTED,
// signed with SigV4 as Origin Access Control does with its signing
// behaviour "always"
// (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-s3.html).
// A viewer's HEAD or range is fetched as the whole object, which is then
// cached; CloudFront may forward a range instead.
func (e *Edge) fetch(ctx context.Context, key cacheKey) (*http.Response, error) {
	u := e.origin.String() + "/" + e.cfg.Bucket + key.path
	if key.query != "" {
		u += "?" + key.query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	creds, err := e.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	if err := e.signer.SignHTTP(ctx, creds, req, emptySHA256, "s3", e.cfg.Region, e.now()); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return e.client.Do(req)
}

// store writes resp's body to a new file and caches it for its TTL.
func (e *Edge) store(key cacheKey, resp *http.Response) (*entry, error) {
	f, err := e.cache.newFile()
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("origin sent %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		return nil, err
	}
	now := e.now()
	ent := &entry{key: key, file: f.Name(), header: http.Header{}, stored: now}
	for _, h := range passedHeaders {
		if v := resp.Header.Get(h); v != "" {
			ent.header.Set(h, v)
		}
	}
	ent.modTime, _ = http.ParseTime(resp.Header.Get("Last-Modified"))
	ttl := e.cfg.Policy.ttl(resp.Header.Get("Cache-Control"), resp.Header.Get("Expires"), resp.Header.Get("Date"), now)
	ent.expires = now.Add(ttl)
	if ttl > 0 {
		e.cache.put(ent)
	} else {
		ent.transient = true
	}
	// With no TTL the entry is served once from its file and never
	// indexed; the file is removed below once served (serveEntry).
	return ent, nil
}

// serveEntry answers from a cached copy: GET, HEAD (the Content-Length of
// the whole object), ranges and conditional requests, as http.ServeContent
// does them. It returns false when the copy's file is gone (invalidated
// since it was looked up), having written nothing.
func (e *Edge) serveEntry(w http.ResponseWriter, r *http.Request, ent *entry, xCache string) bool {
	f, err := os.Open(ent.file)
	if err != nil {
		return false
	}
	defer f.Close()
	if ent.transient {
		defer os.Remove(ent.file)
	}
	for h, v := range ent.header {
		w.Header()[h] = v
	}
	w.Header().Set("X-Cache", xCache)
	if xCache == xCacheHit {
		w.Header().Set("Age", strconv.FormatInt(int64(e.now().Sub(ent.stored)/time.Second), 10))
	}
	http.ServeContent(w, r, "", ent.modTime, f)
	return true
}
