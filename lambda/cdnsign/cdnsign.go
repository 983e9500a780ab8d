// Package cdnsign makes CloudFront signed URLs with a canned policy
// (Expires, Signature, Key-Pair-Id), for keys CloudFront accepts in a trusted
// key group: RSA 2048 and ECDSA P-256.
//
// RSA keys are signed by the SDK's feature/cloudfront/sign, which hashes the
// policy with SHA-1, CloudFront's default. That package always hashes with
// SHA-1 and never writes Hash-Algorithm, so ECDSA keys are signed here with
// SHA-256 and the URL carries Hash-Algorithm=SHA256, as CloudFront documents:
// https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/PrivateCFSignatureCodeAndExamples.html
// https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html
package cdnsign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
)

// rsaBits is the one RSA size CloudFront takes for signed URLs ("RSA 2048 or
// ECDSA 256 key signatures", API_PublicKey).
const rsaBits = 2048

// reservedParams are CloudFront's own query parameters; an object URL that
// already has one cannot be signed.
var reservedParams = []string{"Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm"}

// Signer signs CloudFront URLs with one private key. KeyPairID is the ID of
// the matching public key in the distribution's trusted key group. A Signer
// is safe for concurrent use.
type Signer struct {
	KeyPairID string
	key       crypto.Signer
}

// New reads an unencrypted PEM private key: PKCS#8 ("PRIVATE KEY", RSA 2048
// or ECDSA P-256) or PKCS#1 ("RSA PRIVATE KEY", RSA 2048). Anything else,
// SEC 1 "EC PRIVATE KEY" included, is refused with an error that says why.
func New(keyPairID string, pemKey []byte) (*Signer, error) {
	if keyPairID == "" || strings.Trim(keyPairID, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		return nil, fmt.Errorf("cdnsign: key pair ID %q: want the CloudFront public key's ID (capital letters and digits)", keyPairID)
	}
	key, err := parseKey(pemKey)
	if err != nil {
		return nil, fmt.Errorf("cdnsign: %w", err)
	}
	return &Signer{KeyPairID: keyPairID, key: key}, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block in the private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
		}
	case "RSA PRIVATE KEY":
		if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("parse PKCS#1 private key: %w", err)
		}
	case "EC PRIVATE KEY":
		return nil, errors.New(`PEM block "EC PRIVATE KEY" (SEC 1) is not accepted: ` +
			"convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)")
	default:
		return nil, fmt.Errorf(`PEM block %q is not accepted: want an unencrypted PKCS#8 "PRIVATE KEY" `+
			`or PKCS#1 "RSA PRIVATE KEY"`, block.Type)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n != rsaBits {
			return nil, fmt.Errorf("RSA key of %d bits: CloudFront takes RSA %d", n, rsaBits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on %s: CloudFront takes ECDSA P-256", k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("%T keys are not accepted: CloudFront takes RSA 2048 or ECDSA P-256", key)
	}
}

// Sign returns rawURL signed with a canned policy that ends at expires
// (whole seconds, UTC). The policy's Resource is rawURL exactly as given,
// query included, so the viewer must request that same string: change no
// parameter, order or percent-encoding after signing. rawURL must be an
// absolute http(s) URL, ASCII only, without a fragment or CloudFront's own
// parameters.
func (s *Signer) Sign(rawURL string, expires time.Time) (string, error) {
	if s.key == nil {
		return "", errors.New("cdnsign: Signer without a key (use New)")
	}
	if err := checkURL(rawURL); err != nil {
		return "", fmt.Errorf("cdnsign: %w", err)
	}
	if expires.Unix() <= 0 {
		return "", fmt.Errorf("cdnsign: expiry %v is not after 1970", expires)
	}
	if _, ok := s.key.(*ecdsa.PrivateKey); ok {
		return s.signSHA256(rawURL, expires)
	}
	signed, err := sign.NewURLSigner(s.KeyPairID, s.key).Sign(rawURL, expires)
	if err != nil {
		return "", fmt.Errorf("cdnsign: %w", err)
	}
	return signed, nil
}

// signSHA256 is the documented procedure with SHA-256: hash and sign the
// canned policy (for ECDSA the signature is ASN.1 DER, as `openssl dgst
// -sign` writes it), base64 it with + = / replaced by - _ ~, and append
// Expires, Signature, Key-Pair-Id and Hash-Algorithm=SHA256.
func (s *Signer) signSHA256(rawURL string, expires time.Time) (string, error) {
	policy, err := cannedPolicy(rawURL, expires)
	if err != nil {
		return "", fmt.Errorf("cdnsign: %w", err)
	}
	digest := sha256.Sum256(policy)
	sig, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("cdnsign: sign policy: %w", err)
	}
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	return rawURL + sep +
		"Expires=" + strconv.FormatInt(expires.Unix(), 10) +
		"&Signature=" + urlSafe.Replace(base64.StdEncoding.EncodeToString(sig)) +
		"&Key-Pair-Id=" + s.KeyPairID +
		"&Hash-Algorithm=SHA256", nil
}

// urlSafe is CloudFront's replacement of the base64 characters that are not
// valid in a query string.
var urlSafe = strings.NewReplacer("+", "-", "=", "_", "/", "~")

// cannedPolicy is the policy statement without white space,
// {"Statement":[{"Resource":"…","Condition":{"DateLessThan":{"AWS:EpochTime":…}}}]},
// encoded as the SDK encodes it for RSA keys (no HTML escaping, so & stays &).
func cannedPolicy(resource string, expires time.Time) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(sign.NewCannedPolicy(resource, expires)); err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// checkURL refuses what cannot be a canned policy's Resource: CloudFront
// takes "the base URL including your query strings, if any, but excluding
// the CloudFront Expires, Signature, and Key-Pair-Id parameters", beginning
// with http:// or https://.
func checkURL(rawURL string) error {
	for i := 0; i < len(rawURL); i++ {
		// Printable ASCII, no space; no quote or backslash, which JSON
		// would escape in the policy.
		if c := rawURL[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return fmt.Errorf("URL %q: byte %q at %d must be percent-encoded", rawURL, c, i)
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("parse URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: want http or https", rawURL)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", rawURL)
	}
	if strings.Contains(rawURL, "#") {
		return fmt.Errorf("URL %q has a fragment", rawURL)
	}
	if u.ForceQuery {
		return fmt.Errorf("URL %q ends its path with an empty ?", rawURL)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("URL %q: query: %w", rawURL, err)
	}
	for _, p := range reservedParams {
		if q.Has(p) {
			return fmt.Errorf("URL %q already has CloudFront's %s parameter", rawURL, p)
		}
	}
	return nil
}
