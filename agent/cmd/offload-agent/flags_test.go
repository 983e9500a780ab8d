package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
)

// TestParseSize: decimal and binary units, fractions, any case; bare K, M,
// G, T stay binary (as rclone, and as the agent always read them). Before,
// 1GB, 1.5G and 8mib were refused ("want a size like 8MiB").
func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"100", 100}, {"7B", 7}, {" 7b ", 7},
		{"512K", 512 << 10}, {"512k", 512 << 10}, {"2KiB", 2048}, {"2kib", 2048},
		{"8M", 8 << 20}, {"8MiB", 8 << 20}, {"8mib", 8 << 20}, {"5 MiB", 5 << 20},
		{"1G", 1 << 30}, {"1GiB", 1 << 30}, {"1T", 1 << 40}, {"1TiB", 1 << 40},
		{"1KB", 1000}, {"1kb", 1000}, {"8MB", 8_000_000}, {"1GB", 1_000_000_000}, {"1gb", 1_000_000_000}, {"2TB", 2_000_000_000_000},
		{"1.5G", 3 << 29}, {"1.5GB", 1_500_000_000}, {"0.5M", 512 << 10}, {"1.1K", 1126}, {"2.25 GiB", 9 << 28},
		{"4194304T", 1 << 62},
	} {
		if got, err := parseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", " ", "MiB", "-1", "+1", "-1.5G", ".5M", "1.", "1.5.5M", "1e3", "0x10", "1_000", "1,5G",
		"5XB", "5 M iB", "8Mb/s", "99999999999T", "4194305T", "9223372036854775807", "1PiB", "x", strings.Repeat("9", 70)} {
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
	f.Add("--watch\x00"+dir+"/static\x00--archive\x00"+dir+"/archive", "OFFLOAD_BUCKET=offload-test\nOFFLOAD_TABLE=offload-ledger")
	f.Add("--concurrency\x0099999999999\x00--part-size\x005GiB", "OFFLOAD_BUCKET=offload-test\nOFFLOAD_TABLE=offload-ledger\nOFFLOAD_WATCH="+dir+"/static\nOFFLOAD_ARCHIVE="+dir+"/archive")
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
	env := map[string]string{"OFFLOAD_BUCKET": "offload-test", "OFFLOAD_TABLE": "offload-ledger", "OFFLOAD_WATCH": filepath.Join(dir, "static"),
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

// cli runs the command line as main does, up to where run or once would
// start the agent (code -1 then): help, usage errors, and every
// subcommand's parsing. Only for command lines that stop before any AWS call.
func cli(env map[string]string, args ...string) (stdout, stderr string, code int) {
	var o, e strings.Builder
	getenv := func(k string) string { return env[k] }
	code, handled := dispatch(args, getenv, &o, &e)
	if !handled {
		code = -1
		if _, ok, c := parseAgentFlags(newCommandLine(args[0]), args[1:], getenv, &o, &e); !ok {
			code = c
		}
	}
	return o.String(), e.String(), code
}

// TestHelpOnStdout: every way of asking for help prints it on stdout,
// nothing on stderr, and exits 0. Before, "help" and "-h" printed on
// stderr, "run --help" on stdout, and "status --help" the flag package's
// "Usage of offload-agent status:" on stderr.
func TestHelpOnStdout(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // a line only that help has
	}{
		{[]string{"help"}, "offload-agent help [COMMAND]"},
		{[]string{"-h"}, "offload-agent help [COMMAND]"},
		{[]string{"--help"}, "offload-agent help [COMMAND]"},
		{[]string{"-help"}, "offload-agent help [COMMAND]"},
		{[]string{"help", "run"}, "offload-agent run [flags]"},
		{[]string{"run", "--help"}, "offload-agent run [flags]"},
		{[]string{"run", "-h"}, "offload-agent run [flags]"},
		{[]string{"once", "-help"}, "offload-agent once [flags]"},
		{[]string{"help", "once"}, "offload-agent once [flags]"},
		{[]string{"audit", "--help"}, "offload-agent audit [flags]"},
		{[]string{"audit", "-h"}, "offload-agent audit [flags]"},
		{[]string{"help", "audit"}, "offload-agent audit [flags]"},
		{[]string{"status", "--help"}, "offload-agent status [flags]"},
		{[]string{"help", "status"}, "offload-agent status [flags]"},
		{[]string{"help", "version"}, "offload-agent version"},
		{[]string{"help", "help"}, "offload-agent help [COMMAND]"},
		// Help wins over a bad value given before it.
		{[]string{"run", "--bucket", "ok-bucket", "--help"}, "offload-agent run [flags]"},
	} {
		out, errOut, code := cli(nil, tt.args...)
		if code != 0 || errOut != "" || !strings.Contains(out, tt.want) {
			t.Errorf("offload-agent %q: exit %d, stderr %q, stdout %d bytes; want exit 0, nothing on stderr, help saying %q on stdout",
				tt.args, code, errOut, len(out), tt.want)
		}
	}
	// The overview also lists run's flags and their variables.
	if out, _, _ := cli(nil, "help"); !strings.Contains(out, "OFFLOAD_BUCKET") || !strings.Contains(out, "--transfers") {
		t.Errorf("offload-agent help: want run's flags, with their variables:\n%s", out)
	}
}

// TestAuditHelpIsAudits: audit's help lists audit's flags, with what
// --grace means there, and none of what audit does not take. Before, audit
// --help printed run's help, where --grace is "on SIGTERM, how long
// in-flight uploads may finish before they are aborted".
func TestAuditHelpIsAudits(t *testing.T) {
	out, _, _ := cli(nil, "audit", "--help")
	for _, want := range []string{"--grace", "mid-offload and are", "not run's --grace", "--deep", "--json", "--cache-dir", "--bucket", "--watch", "OFFLOAD_WATCH", "--host-timeout", "erasure-pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit --help does not say %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"on SIGTERM", "\n  --transfers", "\n  --part-size", "\n  --quiet", "\n  --access-log", "\n  --metrics-addr", "--workers", "Hot cache"} {
		if strings.Contains(out, not) {
			t.Errorf("audit --help says %q, which is not audit's:\n%s", not, out)
		}
	}
	if other, _, _ := cli(nil, "help", "audit"); other != out {
		t.Errorf("help audit and audit --help differ:\n%s\n---\n%s", other, out)
	}
	status, _, _ := cli(nil, "status", "--help")
	if !strings.Contains(status, "--metrics-addr") || !strings.Contains(status, "--json") || strings.Contains(status, "--bucket") {
		t.Errorf("status --help: want --metrics-addr and --json only:\n%s", status)
	}
}

// TestUsageErrors: a usage error is one line on stderr, nothing on stdout,
// exit 2, with the closest command or flag for a typo. Before: "rnu" got
// `unknown command "rnu" (want run, once, status, audit or version; ...)`
// and --bukcet got "flag provided but not defined: -bukcet".
func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "no command: want one of audit, doctor, erase, help, init, once, prune, run, status, version"},
		{[]string{"rnu"}, `unknown command "rnu": did you mean run?`},
		{[]string{"adit"}, "did you mean audit?"},
		{[]string{"stauts"}, "did you mean status?"},
		{[]string{"verison"}, "did you mean version?"},
		{[]string{"sync"}, `unknown command "sync" (see offload-agent help)`},
		{[]string{"help", "rnu"}, `unknown command "rnu": did you mean run?`},
		{[]string{"run", "--bukcet", "b"}, "offload-agent run: unknown flag --bukcet: did you mean --bucket? (see offload-agent run --help)"},
		{[]string{"once", "--buck", "b"}, "did you mean --bucket?"},
		{[]string{"run", "--trasnfers", "3"}, "did you mean --transfers?"},
		{[]string{"run", "--worker", "3"}, "did you mean --transfers?"}, // a typo of an old spelling suggests the new one
		{[]string{"run", "--cache-dri", "/x"}, "did you mean --cache-dir?"},
		{[]string{"audit", "--gracee", "1h"}, "offload-agent audit: unknown flag --gracee: did you mean --grace?"},
		{[]string{"audit", "--quiet", "1s"}, "unknown flag --quiet"}, // not audit's
		{[]string{"status", "--jsno"}, "did you mean --json?"},
		{[]string{"run", "--zzzzzz"}, "unknown flag --zzzzzz (see offload-agent run --help)"},
		{[]string{"run", "--quiet"}, "--quiet needs a value"},
		{[]string{"run", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"run", "--quiet", "soon"}, "--quiet soon: want a duration like 2s or 1m (default 2s)"},
		{[]string{"run", "--log-format", "xml"}, "--log-format xml: want text or json (default text)"},
		{[]string{"run", "--dry-run=maybe"}, "dry-run"},
		{[]string{"audit", "--grace", "soon"}, "offload-agent audit: --grace soon: want a duration like 1h, or 0s"},
		{[]string{"audit", "--grace", "-1h"}, "--grace -1h: want a duration"},
		{[]string{"audit", "--json=maybe"}, "--json maybe: want true or false"},
		{[]string{"audit", "--host-timeout", "0s"}, "offload-agent audit: --host-timeout 0s: want a duration like 3m, more than 0"},
		{[]string{"status", "--metrics-addr", "nowhere"}, "--metrics-addr nowhere: want host:port"},
	} {
		out, errOut, code := cli(nil, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("offload-agent %q: exit %d, stdout %q, stderr %q; want exit 2, nothing on stdout, one line saying %q", tt.args, code, out, errOut, tt.want)
		}
	}
}

// TestZeroRefused: a zero duration, count or size is refused, naming the
// default, where it used to mean the default (agent.Config.WithDefaults
// fills in every zero field: --quiet 0s was 2s); --bwlimit 0 means no
// limit, and audit's --grace 0s judges everything, as they always did.
func TestZeroRefused(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--quiet", "0s"}, nil, "--quiet 0s: want more than 0 (default 2s)"},
		{nil, map[string]string{"OFFLOAD_QUIET": "0"}, "OFFLOAD_QUIET=0: want more than 0 (default 2s)"},
		{[]string{"--quiet", "-1s"}, nil, "--quiet -1s: want more than 0"},
		{[]string{"--rescan", "0s"}, nil, "--rescan 0s: want more than 0 (default 1m0s)"},
		{[]string{"--grace", "0s"}, nil, "--grace 0s: want more than 0 (default 30s)"},
		{[]string{"--call-timeout", "0s"}, nil, "--call-timeout 0s: want more than 0"},
		{[]string{"--settle-timeout", "0s"}, nil, "--settle-timeout 0s: want more than 0"},
		{[]string{"--orphan-age", "0s"}, nil, "--orphan-age 0s: want more than 0 (default 24h0m0s)"},
		{[]string{"--cache-window", "0s"}, nil, "--cache-window 0s: want more than 0"},
		{[]string{"--cache-idle", "0s"}, nil, "--cache-idle 0s: want more than 0"},
		{[]string{"--transfers", "0"}, nil, "--transfers 0: want more than 0 (default 64)"},
		{[]string{"--concurrency", "0"}, nil, "--concurrency 0: want more than 0 (default 8)"},
		{[]string{"--cache-threshold", "0"}, nil, "--cache-threshold 0: want more than 0"},
		{[]string{"--part-size", "0"}, nil, "--part-size 0: want more than 0 (default 8MiB)"},
		{[]string{"--cache-size", "0GiB"}, nil, "--cache-size 0GiB: want more than 0 (default 1GiB)"},
		{[]string{"--cache-fetch-budget", "0"}, nil, "--cache-fetch-budget 0: want more than 0"},
	} {
		_, err := parseFlags("run", tt.args, func(k string) string { return tt.env[k] })
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q, %v) = %v; want %q", tt.args, tt.env, err, tt.want)
		}
	}
	o, err := parseFlags("run", []string{"--bwlimit", "0"}, func(string) string { return "" })
	if err != nil || o.agent.BandwidthLimit != 0 {
		t.Errorf("--bwlimit 0: %v, limit %d; want no limit", err, o.agent.BandwidthLimit)
	}
	if _, errOut, code := cli(nil, "audit", "--grace", "0s", "--bucket", "Bad_Bucket"); code != 2 || strings.Contains(errOut, "grace") {
		t.Errorf("audit --grace 0s: exit %d, %q; want it taken (the bad bucket refused instead)", code, errOut)
	}
}

// TestNoZeroMeansDefault: no setting takes "0" and then has
// agent.Config.WithDefaults (or the cache's) turn it into the default, which
// is what --quiet 0s did. A setting another change adds is checked too.
func TestNoZeroMeansDefault(t *testing.T) {
	withDefaults := func(c agent.Config) agent.Config {
		c = c.WithDefaults()
		c.Cache = c.Cache.WithDefaults()
		c.Logger, c.Cache.Logger = nil, nil
		return c
	}
	empty := withDefaults(agent.Config{})
	for _, s := range settings {
		if s.set == nil || booleans[s.name] {
			continue
		}
		if n, err := parseSize(s.def); err == nil && n == 0 {
			continue // 0 is the default, a setting of its own (--bwlimit: no limit)
		}
		for _, zero := range []string{"0", "0s"} {
			var o options
			if err := s.set(&o, zero); err != nil {
				continue
			}
			if reflect.DeepEqual(withDefaults(o.agent), empty) && o.metrics == "" {
				t.Errorf("--%s %s is taken and then means the default %s; refuse it, or make it mean zero", s.name, zero, s.def)
			}
		}
	}
}

// TestBucketAndTableNames: a name S3 or DynamoDB would refuse is refused at
// once, from a flag or the environment. Before, --bucket 'Bad_Bucket!!'
// was taken and the agent started ("offload-agent starting ...
// bucket=Bad_Bucket!!"), and --table t likewise.
func TestBucketAndTableNames(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--bucket", "Bad_Bucket!!"}, nil, `--bucket "Bad_Bucket!!": 'B' is not allowed in a bucket name`},
		{[]string{"--bucket", "my..bucket"}, nil, "--bucket my..bucket: two adjacent periods"},
		{nil, map[string]string{"OFFLOAD_BUCKET": "b"}, "OFFLOAD_BUCKET=b: 1 characters; a bucket name has 3 to 63"},
		{[]string{"--bucket", "192.168.5.4"}, nil, "IP address"},
		{[]string{"--bucket", "photos--usw2-az1--x-s3"}, nil, "directory bucket"},
		{[]string{"--bucket", "xn--photos"}, nil, "prefix xn-- is reserved"},
		{[]string{"--table", "t"}, nil, "--table t: 1 characters; a table name has 3 to 255"},
		{nil, map[string]string{"OFFLOAD_TABLE": "my ledger"}, `OFFLOAD_TABLE="my ledger": ' ' is not allowed in a table name`},
	} {
		_, err := parseFlags("run", tt.args, func(k string) string { return tt.env[k] })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q, %v) = %v; want an error saying %q", tt.args, tt.env, err, tt.want)
		}
	}
	o, err := parseFlags("run", []string{"--bucket", "photos.example.com", "--table", "Offload_Ledger-1"}, func(string) string { return "" })
	if err != nil || o.agent.Bucket != "photos.example.com" || o.agent.Table != "Offload_Ledger-1" {
		t.Errorf("good names: %v, %q, %q", err, o.agent.Bucket, o.agent.Table)
	}
}

// TestStorageClassSetting: --storage-class (or OFFLOAD_STORAGE_CLASS) is
// taken by run and once, none by default (S3's STANDARD); a class the
// resolver cannot serve without a restore is refused at start, naming
// where it came from.
func TestStorageClassSetting(t *testing.T) {
	none := func(string) string { return "" }
	for _, cmd := range []string{"run", "once"} {
		o, err := parseFlags(cmd, nil, none)
		if err != nil || o.agent.StorageClass != "" {
			t.Errorf("%s without --storage-class: %q, %v; want none", cmd, o.agent.StorageClass, err)
		}
		o, err = parseFlags(cmd, []string{"--storage-class", "GLACIER_IR"}, none)
		if err != nil || o.agent.StorageClass != "GLACIER_IR" {
			t.Errorf("%s --storage-class GLACIER_IR: %q, %v", cmd, o.agent.StorageClass, err)
		}
	}
	o, err := parseFlags("run", nil, func(k string) string { return map[string]string{"OFFLOAD_STORAGE_CLASS": "INTELLIGENT_TIERING"}[k] })
	if err != nil || o.agent.StorageClass != "INTELLIGENT_TIERING" {
		t.Errorf("OFFLOAD_STORAGE_CLASS=INTELLIGENT_TIERING: %q, %v", o.agent.StorageClass, err)
	}
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--storage-class", "DEEP_ARCHIVE"}, nil, "--storage-class DEEP_ARCHIVE: DEEP_ARCHIVE (S3 Glacier Deep Archive) must be restored before a GET"},
		{nil, map[string]string{"OFFLOAD_STORAGE_CLASS": "GLACIER"}, "OFFLOAD_STORAGE_CLASS=GLACIER: GLACIER (S3 Glacier Flexible Retrieval) must be restored"},
		{[]string{"--storage-class", "infrequent"}, nil, `--storage-class infrequent: "infrequent" is not an S3 storage class`},
	} {
		_, err := parseFlags("once", tt.args, func(k string) string { return tt.env[k] })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q, %v) = %v; want an error saying %q", tt.args, tt.env, err, tt.want)
		}
	}
}

// TestDeprecatedSpellings: --workers, --metrics, --cache and their old
// variables still work, each with one warning line naming the new one; the
// new spelling wins; help lists only the new names, and the old on one line.
func TestDeprecatedSpellings(t *testing.T) {
	for _, tt := range []struct {
		cmd  string
		args []string
		env  map[string]string
		warn string
		ok   func(o options) bool
	}{
		{"run", []string{"--workers", "3"}, nil, "--workers is deprecated; use --transfers", func(o options) bool { return o.agent.Workers == 3 }},
		{"run", []string{"--workers=3"}, nil, "--workers is deprecated; use --transfers", func(o options) bool { return o.agent.Workers == 3 }},
		{"run", []string{"--metrics", "127.0.0.1:9464"}, nil, "--metrics is deprecated; use --metrics-addr", func(o options) bool { return o.metrics == "127.0.0.1:9464" }},
		{"run", []string{"--cache", "/var/cache/offload"}, nil, "--cache is deprecated; use --cache-dir", func(o options) bool { return o.agent.Cache.Dir == "/var/cache/offload" }},
		{"audit", []string{"--cache", "/var/cache/offload"}, nil, "--cache is deprecated; use --cache-dir", func(o options) bool { return o.agent.Cache.Dir == "/var/cache/offload" }},
		{"run", nil, map[string]string{"OFFLOAD_WORKERS": "5"}, "OFFLOAD_WORKERS is deprecated; use OFFLOAD_TRANSFERS", func(o options) bool { return o.agent.Workers == 5 }},
		{"run", nil, map[string]string{"OFFLOAD_METRICS": "127.0.0.1:1"}, "OFFLOAD_METRICS is deprecated; use OFFLOAD_METRICS_ADDR", func(o options) bool { return o.metrics == "127.0.0.1:1" }},
		// The new spelling wins, and then nothing is deprecated.
		{"run", []string{"--transfers", "7"}, map[string]string{"OFFLOAD_WORKERS": "5"}, "", func(o options) bool { return o.agent.Workers == 7 }},
		{"run", nil, map[string]string{"OFFLOAD_TRANSFERS": "7", "OFFLOAD_WORKERS": "5"}, "", func(o options) bool { return o.agent.Workers == 7 }},
		{"run", []string{"--transfers", "7", "--workers", "5"}, nil, "", func(o options) bool { return o.agent.Workers == 7 }},
		// The old spelling's value is checked like the new one's.
		{"run", []string{"--workers", "0"}, nil, "--workers 0: want more than 0 (default 64)", nil},
	} {
		var out, errOut strings.Builder
		o, ok, _ := parseAgentFlags(newCommandLine(tt.cmd), tt.args, func(k string) string { return tt.env[k] }, &out, &errOut)
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		switch {
		case tt.warn == "" && errOut.Len() != 0:
			t.Errorf("%s %q %v: stderr %q; want nothing", tt.cmd, tt.args, tt.env, errOut.String())
		case tt.warn != "" && (len(lines) != 1 || !strings.HasPrefix(lines[0], "offload-agent "+tt.cmd+": ") || !strings.Contains(lines[0], tt.warn)):
			t.Errorf("%s %q %v: stderr %q; want one line saying %q", tt.cmd, tt.args, tt.env, errOut.String(), tt.warn)
		case tt.ok != nil && (!ok || !tt.ok(o)):
			t.Errorf("%s %q %v: ok %v, options %+v; want the value taken", tt.cmd, tt.args, tt.env, ok, o)
		case tt.ok == nil && ok:
			t.Errorf("%s %q %v: taken; want refused", tt.cmd, tt.args, tt.env)
		}
	}
	help, _, _ := cli(nil, "run", "--help")
	for _, old := range []string{"--workers ", "--metrics ", "--cache "} {
		if strings.Contains(help, "\n  "+old) {
			t.Errorf("run --help lists the old %s as a flag", old)
		}
	}
	want := "deprecated, still accepted with a warning: --cache (use --cache-dir), --metrics (use --metrics-addr), --workers (use --transfers); OFFLOAD_METRICS (use OFFLOAD_METRICS_ADDR), OFFLOAD_WORKERS (use OFFLOAD_TRANSFERS)"
	if !strings.Contains(help, want) {
		t.Errorf("run --help does not say %q:\n%s", want, help)
	}
}

// TestSuggestions: the closest name within two edits, a swap counting one.
func TestSuggestions(t *testing.T) {
	names := map[string]string{"bucket": "bucket", "table": "table", "transfers": "transfers", "workers": "transfers", "cache-dir": "cache-dir", "cache-size": "cache-size"}
	for typed, want := range map[string]string{
		"bukcet": ": did you mean --bucket?", "buckett": ": did you mean --bucket?", "tabel": ": did you mean --table?",
		"wrokers": ": did you mean --transfers?", "cache-sise": ": did you mean --cache-size?", "buck": ": did you mean --bucket?",
		"xyz": "", "b": "", "tables-and-chairs": "",
	} {
		if got := didYouMean(typed, names, "--"); got != want {
			t.Errorf("didYouMean(%q) = %q; want %q", typed, got, want)
		}
	}
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"run", "run", 0}, {"rnu", "run", 1}, {"bukcet", "bucket", 1}, {"kitten", "sitting", 3}, {"", "abc", 3}, {"ca", "abc", 3}} {
		if d := editDistance(tt.a, tt.b); d != tt.d {
			t.Errorf("editDistance(%q, %q) = %d; want %d", tt.a, tt.b, d, tt.d)
		}
	}
}

// TestBinaryCommandLine: the built binary wires the command line to the
// real stdout and stderr: help on stdout with exit 0, a usage error as one
// line on stderr with exit 2, before any AWS call.
func TestBinaryCommandLine(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "offload-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		args         []string
		code         int
		stdout, errs string
	}{
		{[]string{"help"}, 0, "offload-agent help [COMMAND]", ""},
		{[]string{"-h"}, 0, "offload-agent help [COMMAND]", ""},
		{[]string{"audit", "--help"}, 0, "not run's --grace", ""},
		{[]string{"help", "audit"}, 0, "not run's --grace", ""},
		{[]string{"run", "--help"}, 0, "offload-agent run [flags]", ""},
		{[]string{"status", "-h"}, 0, "--metrics-addr", ""},
		{nil, 2, "", "offload-agent: no command"},
		{[]string{"rnu"}, 2, "", "did you mean run?"},
		{[]string{"run", "--bukcet", "x"}, 2, "", "did you mean --bucket?"},
		{[]string{"once", "--quiet", "0s"}, 2, "", "--quiet 0s: want more than 0 (default 2s)"},
		{[]string{"once", "--bucket", "Bad_Bucket!!"}, 2, "", "not allowed in a bucket name"},
		{[]string{"once", "--workers", "0"}, 2, "", "--workers 0: want more than 0"},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		switch {
		case code != tt.code:
			t.Errorf("offload-agent %q: exit %d; want %d (stderr %q)", tt.args, code, tt.code, errOut.String())
		case tt.stdout != "" && (!strings.Contains(out.String(), tt.stdout) || errOut.Len() != 0):
			t.Errorf("offload-agent %q: stderr %q; want nothing there and stdout saying %q", tt.args, errOut.String(), tt.stdout)
		case tt.errs != "" && (out.Len() != 0 || !strings.Contains(errOut.String(), tt.errs) || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0):
			t.Errorf("offload-agent %q: stdout %q, stderr %q; want nothing on stdout, one line on stderr saying %q", tt.args, out.String(), errOut.String(), tt.errs)
		}
	}
}

// TestPruneSettingsArePrunes: prune's help lists its own settings (the
// minimum age and the metrics file, each with its variable) and its
// --dry-run, which is not run's; run and once take neither setting, so
// OFFLOAD_PRUNE_MIN_AGE in agent.env changes nothing for the agent.
func TestPruneSettingsArePrunes(t *testing.T) {
	out, _, code := cli(nil, "prune", "--help")
	for _, want := range []string{"--min-age", "OFFLOAD_PRUNE_MIN_AGE", "--metrics-textfile", "OFFLOAD_PRUNE_METRICS_TEXTFILE", "--dry-run", "--json", "--archive", "720h"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("prune --help (exit %d) does not say %q:\n%s", code, want, out)
		}
	}
	for _, not := range []string{"OFFLOAD_DRY_RUN,", "\n  --part-size", "\n  --cache-dir", "\n  --grace"} {
		if strings.Contains(out, not) {
			t.Errorf("prune --help says %q, which is not prune's:\n%s", not, out)
		}
	}
	for _, cmd := range []string{"run", "once", "audit"} {
		if help, _, _ := cli(nil, cmd, "--help"); strings.Contains(help, "min-age") || strings.Contains(help, "PRUNE") {
			t.Errorf("%s --help lists prune's settings:\n%s", cmd, help)
		}
		if _, err := parseFlags(cmd, []string{"--min-age", "1h"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "unknown flag --min-age") {
			t.Errorf("%s --min-age 1h: %v; want unknown flag", cmd, err)
		}
	}
	o, err := parseFlags("prune", nil, func(k string) string { return map[string]string{"OFFLOAD_PRUNE_MIN_AGE": "720h"}[k] })
	if err != nil || o.pruneMinAge != 720*time.Hour {
		t.Errorf("OFFLOAD_PRUNE_MIN_AGE=720h: %v, min age %v; want 720h", err, o.pruneMinAge)
	}
}

// TestErasePollIsRuns: run takes --erase-poll (and OFFLOAD_ERASE_POLL),
// default a minute, more than 0; once does not poll for erasures, says so
// in its help, and refuses the flag.
func TestErasePollIsRuns(t *testing.T) {
	o, err := parseFlags("run", nil, func(k string) string { return map[string]string{"OFFLOAD_ERASE_POLL": "30s"}[k] })
	if err != nil || o.agent.ErasePoll != 30*time.Second {
		t.Errorf("run with OFFLOAD_ERASE_POLL=30s: %v, erase poll %v; want 30s", err, o.agent.ErasePoll)
	}
	if _, err := parseFlags("run", []string{"--erase-poll", "0s"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "want more than 0") {
		t.Errorf("run --erase-poll 0s: %v; want refused", err)
	}
	if help, _, _ := cli(nil, "run", "--help"); !strings.Contains(help, "--erase-poll") || !strings.Contains(help, "OFFLOAD_ERASE_POLL, default 1m0s") {
		t.Errorf("run --help does not list --erase-poll with its default:\n%s", help)
	}
	help, _, _ := cli(nil, "once", "--help")
	if strings.Contains(help, "OFFLOAD_ERASE_POLL") || !strings.Contains(help, "once does not poll") {
		t.Errorf("once --help lists --erase-poll, or does not say once does not poll:\n%s", help)
	}
	if _, err := parseFlags("once", []string{"--erase-poll", "1m"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "unknown flag --erase-poll") {
		t.Errorf("once --erase-poll 1m: %v; want unknown flag", err)
	}
}

// TestHelpProseIsWrapped: each command's description, above its flags,
// reads in a terminal: no line over 100 columns (a sentence once ran to
// 110 in erase's).
func TestHelpProseIsWrapped(t *testing.T) {
	for _, cmd := range commandNames() {
		out, _, _ := cli(nil, "help", cmd)
		prose, _, _ := strings.Cut(out, "\nflags")
		for i, line := range strings.Split(prose, "\n") {
			if n := utf8.RuneCountInString(line); n > 100 {
				t.Errorf("offload-agent help %s, line %d: %d columns; want at most 100: %q", cmd, i+1, n, line)
			}
		}
	}
}
