package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Signed URLs, checked as CloudFront documents them. The verification is
// written from the documentation, independently of lambda/cdnsign (which
// signs), so that a mistake in one is not repeated in the other:
//   - "Create a signed URL using a canned policy":
//     https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html
//     the URL is the base URL (with the viewer's own query parameters)
//     followed by Expires, Signature, Key-Pair-Id and, for SHA-256,
//     Hash-Algorithm=SHA256; the signature is over the canned policy
//     {"Statement":[{"Resource":"BASE URL","Condition":{"DateLessThan":{"AWS:EpochTime":EXPIRES}}}]}
//     without white space.
//   - "Linux commands and OpenSSL for base64 encoding and encryption":
//     https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-linux-openssl.html
//     SHA-1 is the default, SHA-256 with Hash-Algorithm=SHA256; the key is
//     RSA 2048 or ECDSA 256 (`openssl sha1 -sign`: PKCS#1 v1.5 for RSA,
//     an ASN.1 DER signature for ECDSA); base64 with '+' '=' '/' replaced
//     by '-' '_' '~'.
//   - "Code examples for creating a signature for a signed URL":
//     https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/PrivateCFSignatureCodeAndExamples.html
//   - "Specify signers that can create signed URLs and signed cookies"
//     (trusted key groups, the Key-Pair-Id is a public key's ID):
//     https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-trusted-signers.html
//
// Not done here (the project signs none of them): custom policies
// (Policy=), signed cookies.

// The query parameters CloudFront reads for itself. They are not part of
// the base URL the policy names, nor of the cache key, nor of the request
// to the origin.
const (
	paramExpires       = "Expires"
	paramSignature     = "Signature"
	paramKeyPairID     = "Key-Pair-Id"
	paramHashAlgorithm = "Hash-Algorithm"
	paramPolicy        = "Policy"
)

func isCloudFrontParam(name string) bool {
	switch name {
	case paramExpires, paramSignature, paramKeyPairID, paramHashAlgorithm, paramPolicy:
		return true
	}
	return false
}

// denial is a refused request: CloudFront's status and error document.
type denial struct {
	status        int
	code, message string
	why           string // for the edge's log only
}

func (d *denial) Error() string { return d.code + ": " + d.why }

// accessDenied is CloudFront's answer to a signed URL that does not
// verify, has expired, or names a key the behaviour does not trust.
func accessDenied(why string) *denial {
	return &denial{status: http.StatusForbidden, code: "AccessDenied", message: "Access denied", why: why}
}

// missingKey is CloudFront's answer to a request without Key-Pair-Id on a
// behaviour that requires signed URLs.
func missingKey() *denial {
	return &denial{status: http.StatusForbidden, code: "MissingKey",
		message: "Missing Key-Pair-Id query parameter or cookie value", why: "no Key-Pair-Id"}
}

// KeyGroup is the distribution's trusted key group: public keys by ID.
type KeyGroup map[string]crypto.PublicKey

// ParsePublicKey reads a PEM "PUBLIC KEY" (PKIX) as CloudFront's
// PublicKey takes it: RSA 2048 or ECDSA P-256
// (https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_PublicKey.html).
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New(`want a PEM "PUBLIC KEY" block`)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: CloudFront takes RSA 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on %s: CloudFront takes P-256", k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("%T: CloudFront takes RSA 2048 or ECDSA P-256", key)
	}
	return key, nil
}

// queryParam is one name=value of a raw query, as the viewer wrote it.
type queryParam struct {
	raw  string // "name=value", still percent-encoded
	name string // decoded
	val  string // decoded
}

// splitQuery splits a raw query into its parameters in order, keeping
// each one's original bytes.
func splitQuery(raw string) ([]queryParam, error) {
	var out []queryParam
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		n, v, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(n)
		if err != nil {
			return nil, err
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, err
		}
		out = append(out, queryParam{raw: part, name: name, val: val})
	}
	return out, nil
}

// signedRequest is what a signed URL carries.
type signedRequest struct {
	resource  string // the base URL the policy names
	expires   int64
	signature []byte
	keyPairID string
	hash      crypto.Hash
}

// parseSigned reads CloudFront's parameters from a request and rebuilds
// the base URL: scheme, host, the path as sent and the viewer's own query
// parameters in their order and encoding, CloudFront's removed ("the base
// URL including your query strings, if any, but excluding the CloudFront
// Expires, Signature, and Key-Pair-Id parameters").
func parseSigned(r *http.Request) (*signedRequest, *denial) {
	path, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	if !strings.HasPrefix(path, "/") {
		path = r.URL.EscapedPath() // an absolute-form request-target
	}
	params, err := splitQuery(rawQuery)
	if err != nil {
		return nil, accessDenied("query does not parse: " + err.Error())
	}
	own := map[string]string{}
	var rest []string
	for _, p := range params {
		if !isCloudFrontParam(p.name) {
			rest = append(rest, p.raw)
			continue
		}
		if _, dup := own[p.name]; dup {
			return nil, accessDenied(p.name + " given twice")
		}
		own[p.name] = p.val
	}
	if _, ok := own[paramKeyPairID]; !ok {
		return nil, missingKey()
	}
	if _, ok := own[paramPolicy]; ok {
		return nil, accessDenied("custom policies (Policy=) are not implemented by the local edge")
	}
	s := &signedRequest{keyPairID: own[paramKeyPairID], hash: crypto.SHA1}
	switch own[paramHashAlgorithm] {
	case "", "SHA1":
	case "SHA256":
		s.hash = crypto.SHA256
	default:
		return nil, accessDenied("Hash-Algorithm " + strconv.Quote(own[paramHashAlgorithm]))
	}
	exp, ok := own[paramExpires]
	if !ok {
		return nil, accessDenied("no Expires")
	}
	if s.expires, err = strconv.ParseInt(exp, 10, 64); err != nil {
		return nil, accessDenied("Expires " + strconv.Quote(exp))
	}
	sig, ok := own[paramSignature]
	if !ok {
		return nil, accessDenied("no Signature")
	}
	if s.signature, err = decodeSignature(sig); err != nil {
		return nil, accessDenied("Signature: " + err.Error())
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.resource = scheme + "://" + r.Host + path
	if len(rest) > 0 {
		s.resource += "?" + strings.Join(rest, "&")
	}
	return s, nil
}

// urlSafeDecoding undoes CloudFront's replacement of the base64 characters
// that are not valid in a query string ('+' '=' '/' became '-' '_' '~').
var urlSafeDecoding = strings.NewReplacer("-", "+", "_", "=", "~", "/")

func decodeSignature(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(urlSafeDecoding.Replace(s))
}

// cannedPolicy is the canned policy statement for resource, as the
// signer hashed it: no white space.
func cannedPolicy(resource string, expires int64) ([]byte, error) {
	for i := 0; i < len(resource); i++ {
		// A quote, a backslash or a control byte would have to be escaped
		// in JSON; a URL a viewer can send has them percent-encoded.
		if c := resource[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return nil, fmt.Errorf("byte %q at %d of the URL", c, i)
		}
	}
	return []byte(`{"Statement":[{"Resource":"` + resource + `","Condition":{"DateLessThan":{"AWS:EpochTime":` +
		strconv.FormatInt(expires, 10) + `}}}]}`), nil
}

// verify checks a signed URL against the key group at now: the key is
// trusted, the canned policy rebuilt from the URL carries the signature,
// and now is before Expires (the policy's DateLessThan).
func (kg KeyGroup) verify(r *http.Request, now time.Time) *denial {
	s, d := parseSigned(r)
	if d != nil {
		return d
	}
	key, ok := kg[s.keyPairID]
	if !ok {
		return accessDenied("Key-Pair-Id " + strconv.Quote(s.keyPairID) + " is not in the key group")
	}
	policy, err := cannedPolicy(s.resource, s.expires)
	if err != nil {
		return accessDenied(err.Error())
	}
	var digest []byte
	if s.hash == crypto.SHA256 {
		sum := sha256.Sum256(policy)
		digest = sum[:]
	} else {
		sum := sha1.Sum(policy)
		digest = sum[:]
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, s.hash, digest, s.signature); err != nil {
			return accessDenied("signature does not verify for " + s.resource)
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, s.signature) {
			return accessDenied("signature does not verify for " + s.resource)
		}
	default:
		return accessDenied(fmt.Sprintf("key %s is a %T", s.keyPairID, key))
	}
	// Checked after the signature, so that a forged Expires is "does not
	// verify"; both are the same 403 to the viewer.
	if !now.Before(time.Unix(s.expires, 0)) {
		return accessDenied("expired at " + time.Unix(s.expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
