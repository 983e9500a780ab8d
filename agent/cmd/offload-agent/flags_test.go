package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "100": 100, "8MiB": 8 << 20, "8M": 8 << 20, "1G": 1 << 30, "5 MiB": 5 << 20, "2KiB": 2048, "7B": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5M", "8MB", "99999999999T", "x"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, nil; want an error", in, got)
		}
	}
}

func TestParseFlagsPrecedence(t *testing.T) {
	env := map[string]string{"OFFLOAD_BUCKET": "from-env", "OFFLOAD_TABLE": "table-env", "OFFLOAD_QUIET": "5s", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"}
	o, err := parseFlags("run", []string{"--bucket", "from-flag", "--ignore", "*.a, *.b"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.agent.Bucket != "from-flag" || o.agent.Table != "table-env" || o.agent.Quiet != 5*time.Second {
		t.Errorf("flag > env > default not honoured: %+v", o.agent)
	}
	if o.agent.Rescan != time.Minute || o.agent.After != "archive" || o.agent.Mapping.KeyPrefix != "original/" || o.agent.PartSize != 8<<20 {
		t.Errorf("defaults not applied: %+v", o.agent)
	}
	if strings.Join(o.agent.Ignore, "|") != "*.a|*.b" {
		t.Errorf("ignore = %q", o.agent.Ignore)
	}
	if !o.pathStyle {
		t.Errorf("path style not chosen for a custom S3 endpoint")
	}
	o, _ = parseFlags("run", nil, func(string) string { return "" })
	if o.pathStyle {
		t.Errorf("path style chosen without a custom endpoint")
	}
}

func TestParseFlagsErrorsNameTheSource(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--quiet", "soon"}, nil, "--quiet"},
		{nil, map[string]string{"OFFLOAD_WORKERS": "many"}, "OFFLOAD_WORKERS"},
		{nil, map[string]string{"OFFLOAD_S3_PATH_STYLE": "maybe"}, "s3-path-style"},
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--nope"}, nil, "nope"},
		{[]string{"extra"}, nil, "unexpected"},
	} {
		_, err := parseFlags("run", tt.args, func(k string) string { return tt.env[k] })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q, %v) = %v; want an error naming %q", tt.args, tt.env, err, tt.want)
		}
	}
}

// FuzzConfig feeds arbitrary flags and environment through the whole
// configuration path main takes (parse, defaults, Validate) and then builds
// the agent from it: a bad setting must be a clear error, never a panic or
// an agent that cannot be built.
func FuzzConfig(f *testing.F) {
	dir := f.TempDir()
	for _, d := range []string{"static", "archive"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	// Arguments are separated by NUL, environment entries by newlines.
	f.Add("--watch\x00"+dir+"/static\x00--archive\x00"+dir+"/archive", "OFFLOAD_BUCKET=b\nOFFLOAD_TABLE=t")
	f.Add("--concurrency\x0099999999999\x00--part-size\x005GiB", "OFFLOAD_BUCKET=b\nOFFLOAD_TABLE=t\nOFFLOAD_WATCH="+dir+"/static\nOFFLOAD_ARCHIVE="+dir+"/archive")
	f.Add("--workers\x00-1\x00--quiet\x00-5s\x00--ignore\x00[", "OFFLOAD_AFTER=shred")
	f.Add("--key-prefix\x00../\x00--url-prefix\x00static", "OFFLOAD_PART_SIZE=1T\nOFFLOAD_LOG_LEVEL=loud")
	f.Add("--after\x00delete\x00--rescan\x000s", "OFFLOAD_S3_PATH_STYLE=maybe\nOFFLOAD_CALL_TIMEOUT=1ns")
	f.Fuzz(func(t *testing.T, args, env string) {
		argv := strings.Split(args, "\x00")
		if args == "" {
			argv = nil
		}
		for _, a := range argv {
			if a == "-h" || a == "--h" || a == "-help" || a == "--help" {
				return // prints the usage instead of parsing
			}
		}
		vars := map[string]string{}
		for _, line := range strings.Split(env, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		o, err := parseFlags("run", argv, func(k string) string { return vars[k] })
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error message")
			}
			return
		}
		cfg := o.agent.WithDefaults()
		if err := cfg.Validate(); err != nil {
			return
		}
		if cfg.PartSize < 5<<20 || cfg.PartSize > 5<<30 || cfg.Workers < 1 || cfg.Concurrency < 1 || cfg.Quiet < 0 {
			t.Fatalf("Validate accepted %+v", cfg)
		}
		if err := cfg.Mapping.Validate(); err != nil {
			t.Fatalf("Validate accepted a bad mapping: %v", err)
		}
		a, err := agent.New(cfg, s3.New(s3.Options{Region: "us-east-1"}), dynamodb.New(dynamodb.Options{Region: "us-east-1"}))
		if err != nil {
			t.Fatalf("Validate accepted %+v, but agent.New refused it: %v", cfg, err)
		}
		a.Close()
	})
}

// FuzzParseSize: any text is a size or an error, never a negative or
// overflowed count.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"8MiB", "5 GiB", "0", "-1", "9223372036854775807", "8388608T", "1.5M", " 7B "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
		if back, err := parseSize(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("parseSize(%q) = %d, but parseSize(%d) = %d, %v", s, n, n, back, err)
		}
	})
}

// TestSigningKeyFromEnvOrFile: the key comes from OFFLOAD_SIGNING_KEY, as
// the resolver reads it, or from a file no one else may read, whose final
// newline is not part of it; a short key, a file others can read, and two
// sources at once are refused, each naming what is wrong.
func TestSigningKeyFromEnvOrFile(t *testing.T) {
	const key = "0123456789abcdef-signing"
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private, group := file("private", key+"\n", 0o600), file("group", key+"\r\n", 0o640)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // the key, or what the error must say
		bad  bool
	}{
		{"the resolver's variable", nil, map[string]string{"OFFLOAD_SIGNING_KEY": key}, key, false},
		{"a file, mode 600", []string{"--signing-key-file", private}, nil, key, false},
		{"a file, mode 640, CRLF", nil, map[string]string{"OFFLOAD_SIGNING_KEY_FILE": group}, key, false},
		{"none", nil, nil, "", false},
		{"a file others can read", []string{"--signing-key-file", file("open", key, 0o644)}, nil, "chmod 600", true},
		{"a file its group can write", []string{"--signing-key-file", file("gw", key, 0o660)}, nil, "chmod 600", true},
		{"a missing file", []string{"--signing-key-file", filepath.Join(dir, "nope")}, nil, "--signing-key-file", true},
		{"a short key", nil, map[string]string{"OFFLOAD_SIGNING_KEY": "short"}, "at least 16", true},
		{"a short key in a file", []string{"--signing-key-file", file("short", "short\n", 0o600)}, nil, "at least 16", true},
		{"both", []string{"--signing-key-file", private}, map[string]string{"OFFLOAD_SIGNING_KEY": key}, "give one", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags("run", tc.args, func(k string) string { return tc.env[k] })
			switch {
			case tc.bad && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("parseFlags: %v; want an error saying %q", err, tc.want)
			case !tc.bad && err != nil:
				t.Errorf("parseFlags: %v", err)
			case !tc.bad && string(o.agent.Cache.SigningKey) != tc.want:
				t.Errorf("signing key %q; want %q", o.agent.Cache.SigningKey, tc.want)
			}
		})
	}
}

// TestCacheFetchBudgetFlag: the budget is twice the cache's size unless
// given, and one smaller than the largest file the cache takes is refused.
func TestCacheFetchBudgetFlag(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"static", "archive", "cache"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	env := map[string]string{"OFFLOAD_BUCKET": "b", "OFFLOAD_TABLE": "t", "OFFLOAD_WATCH": filepath.Join(dir, "static"),
		"OFFLOAD_ARCHIVE": filepath.Join(dir, "archive"), "OFFLOAD_CACHE_DIR": filepath.Join(dir, "cache"), "OFFLOAD_ACCESS_LOG": "/var/log/access.log"}
	for _, tc := range []struct {
		args []string
		want int64
		err  string
	}{
		{[]string{"--cache-size", "100MiB"}, 200 << 20, ""},
		{[]string{"--cache-size", "100MiB", "--cache-fetch-budget", "1GiB"}, 1 << 30, ""},
		{[]string{"--cache-size", "100MiB", "--cache-fetch-budget", "10MiB"}, 0, "cache fetch budget"},
	} {
		o, err := parseFlags("run", tc.args, func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		cfg := o.agent.WithDefaults()
		err = cfg.Validate()
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: Validate %v; want an error about the %s", tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: Validate %v", tc.args, err)
		case tc.err == "":
			if got := cfg.Cache.WithDefaults().FetchBudget; got != tc.want {
				t.Errorf("%q: fetch budget %d; want %d", tc.args, got, tc.want)
			}
		}
	}
}
