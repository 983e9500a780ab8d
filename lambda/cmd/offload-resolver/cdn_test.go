package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/photosleeve/offload/infra/local/stacktest"
)

const (
	testCDN       = "https://d111111abcdef8.cloudfront.net"
	testKeyPairID = "K2JCJMDEHXQW5F"
	testSecretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:offload-cdn-key-AbCdEf"
)

func TestCDNBadConfigIsOneLineAndStatus2(t *testing.T) {
	base := map[string]string{"OFFLOAD_BUCKET": "b", "OFFLOAD_VERIFY": "none", "AWS_REGION": "us-east-1"}
	for _, tt := range []struct {
		cdn  map[string]string
		want string
	}{
		{map[string]string{envCDNURL: testCDN}, "set all of"},
		{map[string]string{envCDNURL: testCDN, envCDNKeyPairID: testKeyPairID}, "set all of"},
		{map[string]string{envCDNSecret: testSecretARN}, "set all of"},
		{map[string]string{envCDNURL: "http://d111111abcdef8.cloudfront.net", envCDNKeyPairID: testKeyPairID, envCDNSecret: testSecretARN}, "https"},
		{map[string]string{envCDNURL: testCDN + "/photos", envCDNKeyPairID: testKeyPairID, envCDNSecret: testSecretARN}, "path"},
		{map[string]string{envCDNURL: testCDN + "?x=1", envCDNKeyPairID: testKeyPairID, envCDNSecret: testSecretARN}, "query"},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range tt.cdn {
			env[k] = v
		}
		var stderr bytes.Buffer
		code := run([]string{"--log-format", "text"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr)
		out := strings.TrimSpace(stderr.String())
		if code != 2 || !strings.Contains(out, tt.want) || strings.Contains(out, "\n") {
			t.Errorf("CDN settings %v: status %d, log %q; want status 2 and one line containing %q", tt.cdn, code, out, tt.want)
		}
	}
	// The same settings as flags.
	var stderr bytes.Buffer
	code := run([]string{"--log-format", "text", "--cdn-url", testCDN}, func(k string) string { return base[k] }, &bytes.Buffer{}, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "set all of") {
		t.Errorf("--cdn-url alone: status %d, log %q; want 2 and the all-or-none rule", code, stderr.String())
	}
}

func ecdsaPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestCDNKeyFromSecretsManager: the key comes from GetSecretValue, through
// the Secrets Manager stand-in on loopback; an unknown secret, a caller
// not allowed or a secret that is not a key is a configuration error that
// names the cause and never the secret.
func TestCDNKeyFromSecretsManager(t *testing.T) {
	const notAKey = "not a PEM key, and secret"
	key := ecdsaPEM(t)
	endpoint := stacktest.StartSecretsManager(t, map[string]string{testSecretARN: key, "offload-not-a-key": notAKey}, "AKIDRESOLVER")
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_CA_BUNDLE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	build1 := func(accessKey, secret string) (http.Handler, error) {
		t.Setenv("AWS_ACCESS_KEY_ID", accessKey)
		env := map[string]string{envCDNURL: testCDN, envCDNKeyPairID: testKeyPairID, envCDNSecret: secret}
		return build(context.Background(), log, func(k string) string { return env[k] }, "bucket", "", "original/", "/static/", "15m", "none", "true")
	}

	h, err := build1("AKIDRESOLVER", testSecretARN)
	if err != nil {
		t.Fatalf("build with the key in Secrets Manager: %v", err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/cat.jpg", nil))
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusFound || !strings.HasPrefix(loc, testCDN+"/original/cat.jpg?") ||
		!strings.Contains(loc, "&Key-Pair-Id="+testKeyPairID) {
		t.Errorf("status %d, Location %q; want 302 to a signed URL on %s", rec.Code, loc, testCDN)
	}

	for _, tt := range []struct{ accessKey, secret, want string }{
		{"AKIDRESOLVER", "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-XyZ123", "ResourceNotFoundException"},
		{"AKIDAGENT", testSecretARN, "AccessDeniedException"},
		{"AKIDRESOLVER", "offload-not-a-key", "no PEM block"},
	} {
		_, err := build1(tt.accessKey, tt.secret)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s reading %s: error %v; want %s", tt.accessKey, tt.secret, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), notAKey) || strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}
