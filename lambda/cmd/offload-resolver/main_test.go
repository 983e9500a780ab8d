package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/photosleeve/offload"
)

func TestBadConfigIsOneLineAndStatus2(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OFFLOAD_TABLE": "t", "AWS_REGION": "us-east-1"}, "bucket: required"},
		{map[string]string{"OFFLOAD_BUCKET": "b", "AWS_REGION": "us-east-1"}, "table: required"},
		{map[string]string{"OFFLOAD_BUCKET": "b", "OFFLOAD_TABLE": "t", "OFFLOAD_EXPIRY": "forever"}, "expiry"},
		{map[string]string{"OFFLOAD_BUCKET": "b", "OFFLOAD_TABLE": "t", "OFFLOAD_VERIFY": "maybe"}, "verify"},
		{map[string]string{"OFFLOAD_BUCKET": "b", "OFFLOAD_TABLE": "t", "OFFLOAD_SIGNING_KEY": "short"}, "signing key"},
		{map[string]string{"OFFLOAD_BUCKET": "b", "OFFLOAD_TABLE": "t", "OFFLOAD_KEY_PREFIX": "../"}, "prefixes"},
	} {
		var stderr bytes.Buffer
		code := run([]string{"--log-format", "text"}, func(k string) string { return tt.env[k] }, &bytes.Buffer{}, &stderr)
		out := strings.TrimSpace(stderr.String())
		if code != 2 || !strings.Contains(out, tt.want) || strings.Contains(out, "\n") {
			t.Errorf("env %v: status %d, log %q; want status 2 and one line containing %q", tt.env, code, out, tt.want)
		}
	}
}

func TestSignCommand(t *testing.T) {
	key := "a signing key of enough bytes"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"sign", "--expires", "10m", "/static/a%20b.jpg"}, func(k string) string {
		return map[string]string{"OFFLOAD_SIGNING_KEY": key}[k]
	}, &stdout, &stderr); code != 0 {
		t.Fatalf("sign: status %d: %s", code, stderr.String())
	}
	u, err := url.Parse(strings.TrimSpace(stdout.String()))
	if err != nil || u.EscapedPath() != "/static/a%20b.jpg" {
		t.Fatalf("sign printed %q (%v)", stdout.String(), err)
	}
	q := u.Query()
	if err := offload.VerifyLink([]byte(key), "a b.jpg", q.Get("exp"), q.Get("sig"), time.Now()); err != nil {
		t.Errorf("the printed link does not verify: %v", err)
	}
	if code := run([]string{"sign", "/static/x.jpg"}, func(string) string { return "" }, &stdout, &stderr); code != 2 {
		t.Errorf("sign without a key: status %d; want 2", code)
	}
}

// FuzzResolverConfig feeds arbitrary settings through build, the path from
// the environment to the handler: each is a handler or a clear error,
// never a panic, and an accepted one serves the prefix it was given.
func FuzzResolverConfig(f *testing.F) {
	f.Setenv("AWS_REGION", "us-east-1")
	f.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	f.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	f.Setenv("AWS_CA_BUNDLE", "")
	f.Add("b", "t", "original/", "/static/", "15m", "ledger", "auto", "")
	f.Add("", "", "../", "static", "forever", "maybe", "sometimes", "short")
	f.Add("b", "", "", "/", "-1s", "none", "true", "a signing key of enough bytes")
	f.Add("b", "t", "a//", "/x/", "169h", "ledger", "false", "")
	f.Fuzz(func(t *testing.T, bucket, table, keyPrefix, urlPrefix, expiry, verify, pathStyle, signingKey string) {
		getenv := func(k string) string {
			if k == "OFFLOAD_SIGNING_KEY" {
				return signingKey
			}
			return ""
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		h, err := build(context.Background(), log, getenv, bucket, table, keyPrefix, urlPrefix, expiry, verify, pathStyle)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error message")
			}
			return
		}
		if h == nil {
			t.Fatal("no handler and no error")
		}
		if err := (offload.Mapping{URLPrefix: urlPrefix, KeyPrefix: keyPrefix}).Validate(); err != nil {
			t.Fatalf("accepted prefixes %q, %q that the mapping refuses: %v", urlPrefix, keyPrefix, err)
		}
	})
}

// TestLambdaCredentialsCarryNoExpiry: under Lambda the SDK takes the
// execution role's credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
// and AWS_SESSION_TOKEN, and they report no expiry, so the resolver has no
// end to cut its URLs to and does not claim to. Should the SDK start
// reporting one, the cut applies under Lambda too and the docs can say so.
func TestLambdaCredentialsCarryNoExpiry(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "session-token")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.SessionToken != "session-token" {
		t.Fatalf("credentials did not come from the environment: %+v", c.Source)
	}
	if c.CanExpire {
		t.Errorf("environment credentials now report an expiry (%s): the resolver cuts URLs to it under Lambda too; update the docs", c.Expires)
	}
}
