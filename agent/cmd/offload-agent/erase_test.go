package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/photosleeve/offload"
)

// TestEraseRefusesBadUsage: erase refuses, with one line on stderr and
// exit status 2, before any call: no reason, no name, a name the naming
// contract refuses (then nothing is erased, even the good names), a key
// outside the key prefix, no bucket.
func TestEraseRefusesBadUsage(t *testing.T) {
	env := map[string]string{"OFFLOAD_BUCKET": "originals", "OFFLOAD_TABLE": "ledger"}
	getenv := func(k string) string { return env[k] }
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"/static/a.jpg"}, "--why is required"},
		{[]string{"--why", "  ", "/static/a.jpg"}, "--why is required"},
		{[]string{"--why", "request 12"}, "no URL path or key"},
		{[]string{"--why", "request 12", "/static/a.jpg", "/static/../etc/passwd"}, `".." segment`},
		{[]string{"--why", "request 12", "/static/a%2Fb.jpg"}, "encoded slash"},
		{[]string{"--why", "request 12", "/elsewhere/a.jpg"}, `is not under "/static/"`},
		{[]string{"--why", "request 12", "2024/a.jpg"}, `is not under "original/"`},
		{[]string{"--why", "request 12", "--by", "", "/static/a.jpg"}, "--by is required"},
		{[]string{"--why", "request 12", "--bucket", "", "--table", "", "/static/a.jpg"}, "--bucket and --table are required"},
		{[]string{"--why", "request 12", "--key-prefix", "../", "/static/a.jpg"}, "key prefix"},
		{[]string{"--part-size", "1MiB", "--why", "x", "/static/a.jpg"}, "unknown flag --part-size"},
		{[]string{"--parallel", "0", "--why", "x", "/static/a.jpg"}, "--parallel: want 1 to 15"},
		{[]string{"--parallel", "16", "--why", "x", "/static/a.jpg"}, "--parallel: want 1 to 15"},
	} {
		var out, errOut strings.Builder
		code := eraseCommand(tt.args, getenv, &out, &errOut)
		if code != 2 || out.String() != "" || !strings.Contains(errOut.String(), tt.want) || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
			t.Errorf("erase %q: exit %d, stdout %q, stderr %q; want 2, nothing on stdout, one line with %q", tt.args, code, out.String(), errOut.String(), tt.want)
		}
	}
}

// TestEraseKeys: URL paths and keys map to keys by the naming contract,
// each once. A URL path is cut at "?" and "#" first, as the resolver cuts
// a request's: a pasted signed link names its original, not a key with a
// query in it. A key is taken whole ("?" is a valid key character).
func TestEraseKeys(t *testing.T) {
	got, err := eraseKeys(offload.DefaultMapping, []string{"/static/2024/cat%20one.jpg", "original/2024/cat one.jpg", "original/b.jpg",
		"/static/b.jpg?X-Amz-Expires=900&X-Amz-Signature=abc", "/static/c.jpg#top", "/static/d.jpg?", "original/e.jpg?x=1"})
	if want := []string{"original/2024/cat one.jpg", "original/b.jpg", "original/c.jpg", "original/d.jpg", "original/e.jpg?x=1"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("eraseKeys = %q, %v; want %q", got, err, want)
	}
}
