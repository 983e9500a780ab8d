package cdnsign_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/photosleeve/offload/lambda/cdnsign"
)

// objectURL is what the resolver will sign: a CloudFront URL pinned to the
// recorded version, with response overrides, percent-encoded as the
// resolver builds it.
const objectURL = "https://d111111abcdef8.cloudfront.net/photos/2024/a%20b.jpg" +
	"?versionId=3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY" +
	"&response-content-disposition=inline%3B%20filename%3D%22a%20b.jpg%22" +
	"&response-content-type=image%2Fjpeg"

const keyPairID = "K2JCJMDEHXQW5F"

// expires has a fraction of a second: the URL carries whole seconds.
var expires = time.Unix(1767290400, 600_000_000)

// The keys are made by openssl, so the signer reads what operators will
// give it, and the signatures are checked by openssl, not by Go.
var keyKinds = []struct {
	name    string
	genArgs []string
	hash    string // Hash-Algorithm parameter; "" means absent (SHA-1)
}{
	{"rsa-pkcs8", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}, ""},
	{"rsa-pkcs1", []string{"genrsa", "-traditional", "2048"}, ""},
	{"ecdsa-p256-pkcs8", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}, "SHA256"},
}

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("OFFLOAD_REQUIRE_STACK") != "" {
			t.Fatal("openssl not on PATH: the stack installs it (infra/local/stack)")
		}
		t.Skip("openssl not on PATH: the independent verification cannot run")
	}
	return p
}

func openssl(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(needOpenSSL(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// genKey returns the private key PEM and the path of the public key PEM.
func genKey(t *testing.T, genArgs []string) ([]byte, string) {
	t.Helper()
	dir := t.TempDir()
	priv := filepath.Join(dir, "priv.pem")
	pub := filepath.Join(dir, "pub.pem")
	// -out goes right after the command: genrsa takes its size last.
	args := append([]string{genArgs[0], "-out", priv}, genArgs[1:]...)
	openssl(t, args...)
	openssl(t, "pkey", "-in", priv, "-pubout", "-out", pub)
	b, err := os.ReadFile(priv)
	if err != nil {
		t.Fatal(err)
	}
	return b, pub
}

// signedParts splits a signed URL as CloudFront documents it: the resource
// (the URL without the CloudFront parameters) and those parameters.
func signedParts(t *testing.T, signed string) (resource string, params url.Values) {
	t.Helper()
	i := strings.Index(signed, "&Expires=")
	if i < 0 {
		i = strings.Index(signed, "?Expires=")
	}
	if i < 0 {
		t.Fatalf("no Expires parameter in %s", signed)
	}
	params, err := url.ParseQuery(signed[i+1:])
	if err != nil {
		t.Fatalf("parse CloudFront parameters of %s: %v", signed, err)
	}
	return signed[:i], params
}

// cannedPolicy is the documented canned policy, written out here rather
// than taken from the signer.
func cannedPolicy(resource, expires string) string {
	return `{"Statement":[{"Resource":"` + resource +
		`","Condition":{"DateLessThan":{"AWS:EpochTime":` + expires + `}}}]}`
}

// decodeSignature undoes CloudFront's URL-safe replacements and base64.
func decodeSignature(t *testing.T, s string) []byte {
	t.Helper()
	std := strings.NewReplacer("-", "+", "_", "=", "~", "/").Replace(s)
	b, err := base64.StdEncoding.DecodeString(std)
	if err != nil {
		t.Fatalf("signature %q is not base64 after the replacements: %v", s, err)
	}
	return b
}

// opensslVerify runs `openssl dgst -<hash> -verify pub -signature sig policy`.
func opensslVerify(t *testing.T, hash, pub string, sig []byte, policy string) (bool, string) {
	t.Helper()
	dir := t.TempDir()
	sigPath := filepath.Join(dir, "sig.bin")
	policyPath := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(sigPath, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyPath, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(needOpenSSL(t), "dgst", "-"+hash, "-verify", pub,
		"-signature", sigPath, policyPath).CombinedOutput()
	return err == nil && strings.Contains(string(out), "Verified OK"), strings.TrimSpace(string(out))
}

func TestSignURLParameters(t *testing.T) {
	for _, k := range keyKinds {
		t.Run(k.name, func(t *testing.T) {
			priv, _ := genKey(t, k.genArgs)
			s, err := cdnsign.New(keyPairID, priv)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			signed, err := s.Sign(objectURL, expires)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			resource, params := signedParts(t, signed)
			if resource != objectURL {
				t.Errorf("URL before the CloudFront parameters:\n got %s\nwant %s", resource, objectURL)
			}
			if got, want := params.Get("Expires"), "1767290400"; got != want {
				t.Errorf("Expires = %q, want %q (Unix seconds, UTC)", got, want)
			}
			if got := params.Get("Key-Pair-Id"); got != keyPairID {
				t.Errorf("Key-Pair-Id = %q, want %q", got, keyPairID)
			}
			if got := params.Get("Hash-Algorithm"); got != k.hash {
				t.Errorf("Hash-Algorithm = %q, want %q", got, k.hash)
			}
			if !regexp.MustCompile(`^[A-Za-z0-9~_-]+$`).MatchString(params.Get("Signature")) {
				t.Errorf("Signature %q has characters outside base64 with + = / replaced by - _ ~", params.Get("Signature"))
			}
			// The order CloudFront's example shows: Expires, Signature,
			// Key-Pair-Id, then Hash-Algorithm.
			order := []string{"Expires=", "&Signature=", "&Key-Pair-Id="}
			if k.hash != "" {
				order = append(order, "&Hash-Algorithm=")
			}
			at := len(resource)
			for _, p := range order {
				i := strings.Index(signed[at:], p)
				if i < 0 {
					t.Fatalf("%s missing or out of order in %s", p, signed)
				}
				at += i
			}
			if len(params) != len(order) {
				t.Errorf("CloudFront parameters = %v, want only %v", params, order)
			}
		})
	}
}

func TestSignVerifiesWithOpenSSL(t *testing.T) {
	for _, k := range keyKinds {
		t.Run(k.name, func(t *testing.T) {
			priv, pub := genKey(t, k.genArgs)
			s, err := cdnsign.New(keyPairID, priv)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			signed, err := s.Sign(objectURL, expires)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			resource, params := signedParts(t, signed)
			hash := "sha1" // the documented default
			if params.Get("Hash-Algorithm") == "SHA256" {
				hash = "sha256"
			}
			sig := decodeSignature(t, params.Get("Signature"))
			exp := params.Get("Expires")

			if ok, out := opensslVerify(t, hash, pub, sig, cannedPolicy(resource, exp)); !ok {
				t.Fatalf("openssl does not verify the signature of %s: %s", signed, out)
			}

			tampered := map[string]string{
				"other version": cannedPolicy(strings.Replace(resource, "versionId=3HL4", "versionId=4HL4", 1), exp),
				"other type":    cannedPolicy(strings.Replace(resource, "image%2Fjpeg", "text%2Fhtml", 1), exp),
				"later expiry":  cannedPolicy(resource, "1767290401"),
				"other hash":    cannedPolicy(resource, exp), // checked with the other digest below
			}
			for name, policy := range tampered {
				h := hash
				if name == "other hash" {
					h = map[string]string{"sha1": "sha256", "sha256": "sha1"}[hash]
				}
				if ok, out := opensslVerify(t, h, pub, sig, policy); ok {
					t.Errorf("%s: openssl verified a tampered policy: %s", name, out)
				}
			}

			// Another key of the same kind does not verify it either.
			_, otherPub := genKey(t, k.genArgs)
			if ok, _ := opensslVerify(t, hash, otherPub, sig, cannedPolicy(resource, exp)); ok {
				t.Errorf("a signature verified with another key")
			}
		})
	}
}

func pemBlock(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock(t, "PRIVATE KEY", der)
}

func TestNewRefuses(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&p256.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, id string
		pem      []byte
		want     string // part of the error
	}{
		{"no key pair ID", "", pkcs8(t, p256), "key pair ID"},
		{"not PEM", keyPairID, []byte("not a key"), "no PEM block"},
		{"RSA 1024", keyPairID, pkcs8(t, rsa1024), "2048"},
		{"RSA 1024 PKCS#1", keyPairID, pemBlock(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), "2048"},
		{"P-384", keyPairID, pkcs8(t, p384), "P-256"},
		{"Ed25519", keyPairID, pkcs8(t, ed), "ed25519"},
		{"SEC1 EC key", keyPairID, pemBlock(t, "EC PRIVATE KEY", sec1), "PKCS#8"},
		{"public key", keyPairID, pemBlock(t, "PUBLIC KEY", pubDER), "PUBLIC KEY"},
		{"encrypted", keyPairID, pemBlock(t, "ENCRYPTED PRIVATE KEY", []byte{0x30, 0}), "ENCRYPTED PRIVATE KEY"},
		{"damaged PKCS#8", keyPairID, pemBlock(t, "PRIVATE KEY", []byte{0x30, 0}), "PKCS#8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := cdnsign.New(c.id, c.pem)
			if err == nil {
				t.Fatalf("New accepted it (%+v)", s)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []struct {
		name string
		pem  []byte
	}{{"ecdsa", pkcs8(t, p256)}, {"rsa", pkcs8(t, rsaKey)}} {
		s, err := cdnsign.New(keyPairID, key.pem)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		for _, c := range []struct{ name, url string }{
			{"Expires", objectURL + "&Expires=1"},
			{"Signature", objectURL + "&Signature=x"},
			{"Key-Pair-Id", objectURL + "&Key-Pair-Id=x"},
			{"Policy", objectURL + "&Policy=x"},
			{"Hash-Algorithm", objectURL + "&Hash-Algorithm=SHA256"},
			{"relative", "/photos/a.jpg"},
			{"ftp", "ftp://d111111abcdef8.cloudfront.net/a.jpg"},
			{"fragment", objectURL + "#top"},
			{"non-ASCII", "https://d111111abcdef8.cloudfront.net/é.jpg"},
			{"quote", `https://d111111abcdef8.cloudfront.net/a".jpg`},
		} {
			t.Run(fmt.Sprintf("%s/%s", key.name, c.name), func(t *testing.T) {
				if got, err := s.Sign(c.url, expires); err == nil {
					t.Errorf("Sign(%q) = %q, want an error", c.url, got)
				}
			})
		}
		t.Run(key.name+"/expiry before 1970", func(t *testing.T) {
			if got, err := s.Sign(objectURL, time.Unix(-1, 0)); err == nil {
				t.Errorf("Sign = %q, want an error", got)
			}
		})
	}
}
