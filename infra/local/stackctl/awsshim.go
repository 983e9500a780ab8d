package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/photosleeve/offload/infra/local/loopback"
)

// The AWS shim is a reverse proxy in front of MinIO that changes only the
// answers AWS documents differently from MinIO, in the spirit of Toxiproxy:
// it is not a fake of S3, every request still goes to MinIO, and every
// other answer passes through unchanged.
//
// The answers it changes, both from the HeadObject and GetObject API
// references (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html,
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html):
//   - A GET or HEAD of a key that does not exist, by a caller without
//     s3:ListBucket on the bucket: "If you don't have the s3:ListBucket
//     permission, Amazon S3 returns an HTTP status code 403 Forbidden
//     error", so a missing key cannot be told from a forbidden one. MinIO
//     answers 404 even for a restricted user.
//   - A GET or HEAD of a specific version (?versionId=) by a caller without
//     s3:GetObjectVersion: AWS requires that permission ("you must have the
//     s3:GetObjectVersion permission to access a specific version of an
//     object"); MinIO asks only for s3:GetObject.
//   - A GET or HEAD of the current version (no versionId) by a caller
//     with s3:GetObjectVersion but without s3:GetObject: AWS refuses it
//     (they are separate actions); MinIO lets s3:GetObjectVersion imply
//     s3:GetObject (ActionSet.Match in minio/pkg/policy).
//   - A DeleteObject without a version id by a caller without
//     s3:DeleteObject: AWS refuses it. The stack grants such a caller
//     s3:DeleteObject on MinIO when it has s3:DeleteObjectVersion, the
//     action MinIO checks for a delete of a version
//     (templatepolicy.Document.ForMinIO); AWS authorizes that one as
//     s3:DeleteObjectVersion ("Actions defined by Amazon S3",
//     https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
//     A delete of a version by a caller without s3:DeleteObjectVersion is
//     refused here too.
//
// With --kms (the stack's --kms: the bucket's default encryption is SSE-KMS
// with the stack's key) it also refuses, as AWS does, what a caller may not
// do with the key. MinIO checks no KMS permission on object calls: its
// policies know kms:* actions for its own KMS admin API only (kms-action.go
// in minio/pkg), and it encrypts and decrypts for any caller allowed the S3
// action. AWS asks the caller (for a presigned URL, its signer:
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html)
// for these, and answers 403 AccessDenied without them:
//   - a GET of an SSE-KMS object (the answer carries
//     x-amz-server-side-encryption: aws:kms) needs kms:Decrypt ("Using
//     server-side encryption with AWS KMS keys (SSE-KMS)",
//     https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html).
//     A HEAD is left alone: it returns no object data, and HeadObject's
//     permissions are s3:GetObject only
//     (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
//   - PutObject and CreateMultipartUpload into the bucket need
//     kms:GenerateDataKey, and UploadPart needs kms:Decrypt ("Multipart
//     upload API and permissions",
//     https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions;
//     "Permissions" in
//     https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html).
// As with the lists above, --no-kms-decrypt and --no-kms-generate-data-key
// name the access keys whose grants lack the permission; a caller the
// shim was not told about (credentials a test made after the start) is
// left to MinIO, which lets it use the key.
//
// Which callers lack which permission the stack derives from template.yaml.

const awsShimUsage = `usage: stackctl aws-shim --listen ADDR --upstream URL --bucket NAME [--ca FILE] [--cert FILE --key FILE] [--no-list-bucket KEY,...] [--no-get-object-version KEY,...] [--no-get-object KEY,...] [--no-delete-object KEY,...] [--no-delete-object-version KEY,...] [--kms [--no-kms-decrypt KEY,...] [--no-kms-generate-data-key KEY,...]]`

// awsShimRule is what the shim needs to know to answer like AWS.
type awsShimRule struct {
	bucket string
	// noListBucket holds the access keys whose policy lacks s3:ListBucket.
	noListBucket map[string]bool
	// noGetVersion holds those whose policy lacks s3:GetObjectVersion.
	noGetVersion map[string]bool
	// noGetObject holds those whose policy lacks s3:GetObject.
	noGetObject map[string]bool
	// noDelete and noDeleteVersion hold those whose policy lacks
	// s3:DeleteObject, s3:DeleteObjectVersion.
	noDelete, noDeleteVersion map[string]bool
	// kms: the bucket's default encryption is SSE-KMS. noDecrypt and
	// noGenerate hold the access keys whose grants lack kms:Decrypt,
	// kms:GenerateDataKey on the key.
	kms                   bool
	noDecrypt, noGenerate map[string]bool
}

func runAWSShim(args []string) (int, error) {
	fs := flag.NewFlagSet("aws-shim", flag.ContinueOnError)
	listen := fs.String("listen", "", "loopback address to serve on")
	upstream := fs.String("upstream", "", "MinIO's endpoint URL")
	bucket := fs.String("bucket", "", "the bucket whose answers are changed")
	ca := fs.String("ca", "", "CA bundle for an https upstream")
	cert := fs.String("cert", "", "certificate to serve https with (with --key)")
	key := fs.String("key", "", "private key of --cert")
	keys := fs.String("no-list-bucket", "", "comma-separated access keys without s3:ListBucket")
	versionKeys := fs.String("no-get-object-version", "", "comma-separated access keys without s3:GetObjectVersion")
	getKeys := fs.String("no-get-object", "", "comma-separated access keys without s3:GetObject")
	deleteKeys := fs.String("no-delete-object", "", "comma-separated access keys without s3:DeleteObject")
	deleteVersionKeys := fs.String("no-delete-object-version", "", "comma-separated access keys without s3:DeleteObjectVersion")
	kms := fs.Bool("kms", false, "the bucket encrypts with SSE-KMS: refuse key use to callers without the KMS permissions")
	decryptKeys := fs.String("no-kms-decrypt", "", "with --kms, comma-separated access keys without kms:Decrypt on the bucket's key")
	generateKeys := fs.String("no-kms-generate-data-key", "", "with --kms, comma-separated access keys without kms:GenerateDataKey on the bucket's key")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if *listen == "" || *upstream == "" || *bucket == "" || (*cert == "") != (*key == "") {
		return 2, errors.New(awsShimUsage)
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return 2, fmt.Errorf("--listen %q: want a loopback address", *listen)
	}
	target, err := url.Parse(*upstream)
	if err != nil {
		return 2, err
	}
	rule := awsShimRule{bucket: *bucket, noListBucket: keySet(*keys), noGetVersion: keySet(*versionKeys), noGetObject: keySet(*getKeys),
		noDelete: keySet(*deleteKeys), noDeleteVersion: keySet(*deleteVersionKeys),
		kms: *kms, noDecrypt: keySet(*decryptKeys), noGenerate: keySet(*generateKeys)}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if *ca != "" {
		if err := loopback.TrustCA(transport, *ca); err != nil {
			return 1, err
		}
	}
	logger := log.New(os.Stderr, "aws-shim: ", log.LstdFlags)
	srv := &http.Server{Addr: *listen, Handler: rule.proxy(target, transport, logger), ErrorLog: logger,
		ReadHeaderTimeout: 30 * time.Second}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return 1, err
	}
	logger.Printf("serving %s in front of %s (bucket %s; access keys without s3:ListBucket %d, without s3:GetObjectVersion %d)",
		*listen, *upstream, *bucket, len(rule.noListBucket), len(rule.noGetVersion))
	return serveUntilSignal(srv, func() error {
		if *cert != "" {
			return srv.ServeTLS(l, *cert, *key)
		}
		return srv.Serve(l)
	})
}

// serveUntilSignal runs serve (srv's Serve or ServeTLS on its listener)
// until SIGINT or SIGTERM, then shuts srv down, giving requests in flight
// 5 s: the AWS shim and the Secrets Manager stand-in end this way.
func serveUntilSignal(srv *http.Server, serve func() error) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := serve(); !errors.Is(err, http.ErrServerClosed) {
		return 1, err
	}
	return 0, nil
}

func keySet(list string) map[string]bool {
	set := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		if k != "" {
			set[k] = true
		}
	}
	return set
}

// proxy forwards every request to MinIO unchanged, Host header included
// (it is part of the SigV4 signature), and rewrites the answers in rule.
// A request AWS would refuse outright is answered here and never reaches
// MinIO.
func (rule awsShimRule) proxy(target *url.URL, transport http.RoundTripper, logger *log.Logger) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport:     transport,
		FlushInterval: -1, // stream bodies as they come
		ErrorLog:      logger,
		ModifyResponse: func(resp *http.Response) error {
			if rule.decryptNotAllowed(resp) {
				logger.Printf("%s %s: an SSE-KMS object, refused as AWS does without kms:Decrypt: 403", resp.Request.Method, resp.Request.URL.Path)
				resp.Body.Close()
				return forbid(resp)
			}
			if !rule.missingKeyIsForbidden(resp) {
				return nil
			}
			logger.Printf("%s %s: MinIO's 404 answered as AWS does without s3:ListBucket: 403", resp.Request.Method, resp.Request.URL.Path)
			return forbid(resp)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		missing := rule.readNotAllowed(r)
		if missing == "" {
			missing = rule.deleteNotAllowed(r)
		}
		if missing == "" {
			missing = rule.writeKeyNotAllowed(r)
		}
		if missing != "" {
			logger.Printf("%s %s: refused as AWS does without %s: 403", r.Method, r.URL.Path, missing)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			if r.Method != http.MethodHead {
				io.WriteString(w, accessDenied(""))
			}
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// readNotAllowed returns the permission AWS would find missing for r, a
// read of an object of the bucket: s3:GetObjectVersion for a specific
// version, s3:GetObject for the current one. "" when r is allowed, or not
// an object read.
func (rule awsShimRule) readNotAllowed(r *http.Request) string {
	if !rule.objectRead(r) {
		return ""
	}
	q, who := r.URL.Query(), accessKeyOf(r)
	switch {
	case q.Get("versionId") != "" && rule.noGetVersion[who]:
		return "s3:GetObjectVersion"
	case q.Get("versionId") == "" && rule.noGetObject[who]:
		return "s3:GetObject"
	}
	return ""
}

// deleteNotAllowed returns the permission AWS would find missing for r, a
// DeleteObject of a key of the bucket: s3:DeleteObjectVersion for a
// specific version, s3:DeleteObject without one. "" when r is allowed, or
// not an object delete (AbortMultipartUpload is a DELETE with ?uploadId=).
func (rule awsShimRule) deleteNotAllowed(r *http.Request) string {
	if r.Method != http.MethodDelete || !rule.objectRequest(r) {
		return ""
	}
	q, who := r.URL.Query(), accessKeyOf(r)
	switch {
	case q.Get("versionId") != "" && rule.noDeleteVersion[who]:
		return "s3:DeleteObjectVersion"
	case q.Get("versionId") == "" && rule.noDelete[who]:
		return "s3:DeleteObject"
	}
	return ""
}

// decryptNotAllowed reports whether resp is MinIO's answer with an SSE-KMS
// object's data to a GET by a caller without kms:Decrypt.
func (rule awsShimRule) decryptNotAllowed(resp *http.Response) bool {
	req := resp.Request
	return rule.kms && req.Method == http.MethodGet && resp.StatusCode/100 == 2 && rule.objectRequest(req) &&
		resp.Header.Get("X-Amz-Server-Side-Encryption") == "aws:kms" && rule.noDecrypt[accessKeyOf(req)]
}

// writeKeyNotAllowed returns the KMS permission AWS would find missing for
// r, a write of object data into the bucket whose default encryption is
// SSE-KMS: kms:GenerateDataKey for PutObject (not a copy: the agent never
// copies) and CreateMultipartUpload, kms:Decrypt for UploadPart. "" when r
// is allowed or no such write.
func (rule awsShimRule) writeKeyNotAllowed(r *http.Request) string {
	if !rule.kms {
		return ""
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || bucket != rule.bucket || key == "" {
		return ""
	}
	q, who := r.URL.Query(), accessKeyOf(r)
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"), // CreateMultipartUpload
		r.Method == http.MethodPut && !q.Has("uploadId") && r.Header.Get("X-Amz-Copy-Source") == "" && rule.objectRequest(r): // PutObject
		if rule.noGenerate[who] {
			return "kms:GenerateDataKey"
		}
	case r.Method == http.MethodPut && q.Has("uploadId") && q.Has("partNumber"): // UploadPart
		if rule.noDecrypt[who] {
			return "kms:Decrypt"
		}
	}
	return ""
}

// objectRead reports whether r is a GetObject or HeadObject of a key of the
// bucket: GET or HEAD of /BUCKET/KEY with no query but the version, part,
// response-* overrides and signing parameters. A query naming a
// sub-resource (?uploadId=, ?tagging, ?acl...) is another API.
func (rule awsShimRule) objectRead(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return rule.objectRequest(r)
}

// objectRequest reports whether r names a key of the bucket, with no query
// but the version, part, response-* overrides and signing parameters.
func (rule awsShimRule) objectRequest(r *http.Request) bool {
	bucket, key, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || bucket != rule.bucket || key == "" {
		return false
	}
	for name := range r.URL.Query() {
		// x-id names the operation (the SDKs add x-id=GetObject).
		if name != "versionId" && name != "partNumber" && name != "x-id" && !strings.HasPrefix(name, "response-") && !strings.HasPrefix(strings.ToLower(name), "x-amz-") {
			return false
		}
	}
	return true
}

func accessDenied(requestID string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>` + requestID + `</RequestId></Error>`
}

// errorCode matches the Code of an S3 error document.
var errorCode = regexp.MustCompile(`<Code>([^<]*)</Code>`)

// missingKeyIsForbidden reports whether resp is MinIO's answer to a GET or
// HEAD of a missing key of the bucket by a caller without s3:ListBucket.
// For a GET it reads the error document (and puts it back).
func (rule awsShimRule) missingKeyIsForbidden(resp *http.Response) bool {
	req := resp.Request
	if resp.StatusCode != http.StatusNotFound || !rule.objectRead(req) || !rule.noListBucket[accessKeyOf(req)] {
		return false
	}
	if req.Method == http.MethodHead {
		return true // no body to tell NoSuchKey from NoSuchBucket; the bucket exists
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	m := errorCode.FindSubmatch(body)
	return m != nil && string(m[1]) == "NoSuchKey"
}

// forbid turns resp into the 403 AccessDenied that AWS sends.
func forbid(resp *http.Response) error {
	resp.StatusCode, resp.Status = http.StatusForbidden, "403 Forbidden"
	body := []byte(accessDenied(resp.Header.Get("X-Amz-Request-Id")))
	if resp.Request.Method == http.MethodHead {
		body = nil // a HEAD answer has no body, on AWS too
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Set("Content-Type", "application/xml")
	for name := range resp.Header {
		if strings.HasPrefix(strings.ToLower(name), "x-minio-error") {
			resp.Header.Del(name)
		}
	}
	return nil
}

// accessKeyOf returns the access key a SigV4 request (header or presigned
// query) is signed with.
func accessKeyOf(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); cred == "" && auth != "" {
		if _, after, ok := strings.Cut(auth, "Credential="); ok {
			cred = after
		}
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}
