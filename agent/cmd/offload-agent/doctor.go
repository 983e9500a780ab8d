package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/sys/unix"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent/doctor"
	"github.com/photosleeve/offload/agent/setup"
)

// defaultEnvFile is the unit's EnvironmentFile=.
const defaultEnvFile = "/etc/offload/agent.env"

const doctorUsage = `offload-agent doctor [flags]

Checks what a first day gets wrong, one line per check ("ok", "FAIL" with the
fix on the next line, "warn", or "skip" with the reason): the credentials and
who they are, the region, the bucket and the table and each grant the agent
needs (with calls that leave nothing behind), the folders as the service user
(read, write, rename, setgid and default ACL), leases and the file system,
and, with --web-url, the web server's and the resolver's answers for a
missing original. Exit status 0 only when no check fails, 1 otherwise, 2 on
bad usage.

Settings come as the agent's do: flags, else the environment, where
--env-file's values (the unit's EnvironmentFile=) win over the process's
own, as they are the whole environment of the service under systemd. Run it
as root to check the folders as --user, as the service runs.
`

// doctorFlags are doctor's flags, in one place so that one flag parser
// can take them over.
type doctorFlags struct {
	envFile, watch, archive, bucket, table, keyPrefix, user, webURL, resolverBase, pathStyle string
	// child: run only the folder checks, as this process's user, and print
	// them as JSON (doctor re-executes itself so as root).
	child       bool
	foreignFile string
}

func (f *doctorFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.envFile, "env-file", "", "systemd EnvironmentFile to read settings from; \"none\" for none (default: "+defaultEnvFile+" when it exists)")
	fs.StringVar(&f.watch, "watch", "", "watch folder (OFFLOAD_WATCH)")
	fs.StringVar(&f.archive, "archive", "", "archive folder (OFFLOAD_ARCHIVE)")
	fs.StringVar(&f.bucket, "bucket", "", "S3 bucket (OFFLOAD_BUCKET)")
	fs.StringVar(&f.table, "table", "", "DynamoDB ledger table (OFFLOAD_TABLE)")
	fs.StringVar(&f.keyPrefix, "key-prefix", "", "object key prefix (OFFLOAD_KEY_PREFIX, default "+offload.DefaultMapping.KeyPrefix+")")
	fs.StringVar(&f.user, "user", "", "the service user the folders are checked as, when doctor runs as root (OFFLOAD_USER, default offload)")
	fs.StringVar(&f.webURL, "web-url", "", "the web server's URL of the watch folder, e.g. http://127.0.0.1/static/ (OFFLOAD_WEB_URL; default: no web check)")
	fs.StringVar(&f.resolverBase, "resolver-base", "", "the resolver's base URL, no trailing slash (OFFLOAD_RESOLVER_BASE)")
	fs.StringVar(&f.pathStyle, "s3-path-style", "", "path-style S3 URLs: true, false or auto (OFFLOAD_S3_PATH_STYLE)")
	fs.BoolVar(&f.child, "folders-child", false, "internal: the folder checks as this process's user, as JSON")
	fs.StringVar(&f.foreignFile, "foreign-file", "", "internal: another user's file to lease")
}

// doctorCommand is "offload-agent doctor".
func doctorCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var f doctorFlags
	fs := newFlagSet("doctor", doctorUsage)
	f.define(fs)
	if ok, code := parseCommand(fs, args, stdout, stderr); !ok {
		return code
	}
	if f.child {
		res := doctor.Folders{Watch: f.watch, Archive: f.archive, ForeignFile: f.foreignFile}.Check()
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			return 1
		}
		return 0
	}

	var results []doctor.Result
	env, envResult := readEnvFile(f.envFile, getenv)
	results = append(results, envResult)
	// Under systemd the file's values are the service's environment: they
	// win over this shell's. The SDK reads the process environment itself
	// (credentials, region, endpoints), so they go there too.
	for k, v := range env {
		os.Setenv(k, v)
	}
	lookup := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return getenv(k)
	}
	pick := func(flagValue, key, def string) string {
		if flagValue != "" {
			return flagValue
		}
		if v := lookup(key); v != "" {
			return v
		}
		return def
	}
	watch, archive := pick(f.watch, "OFFLOAD_WATCH", ""), pick(f.archive, "OFFLOAD_ARCHIVE", "")
	bucket, table := pick(f.bucket, "OFFLOAD_BUCKET", ""), pick(f.table, "OFFLOAD_TABLE", "")
	keyPrefix := offload.DefaultMapping.KeyPrefix
	if f.keyPrefix != "" || lookup("OFFLOAD_KEY_PREFIX") != "" {
		keyPrefix = pick(f.keyPrefix, "OFFLOAD_KEY_PREFIX", "")
	}
	userName := pick(f.user, "OFFLOAD_USER", "offload")
	webURL, resolverBase := pick(f.webURL, "OFFLOAD_WEB_URL", ""), pick(f.resolverBase, "OFFLOAD_RESOLVER_BASE", "")

	var missing []string
	for _, s := range []struct{ key, v string }{{"OFFLOAD_WATCH", watch}, {"OFFLOAD_BUCKET", bucket}, {"OFFLOAD_TABLE", table}} {
		if s.v == "" {
			missing = append(missing, s.key)
		}
	}
	if len(missing) > 0 {
		results = append(results, doctor.Result{Status: doctor.Fail, Name: "settings", Detail: "not set: " + strings.Join(missing, ", "),
			Fix: "set them in " + defaultEnvFile + " (offload-agent init writes it from the stack's outputs), or give the flags"})
	} else {
		results = append(results, doctor.Result{Status: doctor.OK, Name: "settings", Detail: fmt.Sprintf("watch %s, archive %s, bucket %s, table %s, key prefix %q", watch, orNone(archive), bucket, table, keyPrefix)})
	}

	results = append(results, doctor.StorageClass(lookup("OFFLOAD_STORAGE_CLASS")))

	if os.Geteuid() == 0 {
		serviceAWSFiles(userName, lookup)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if bucket != "" && table != "" {
		a, err := doctorAWS(ctx, lookup, pick(f.pathStyle, "OFFLOAD_S3_PATH_STYLE", "auto"))
		if err != nil {
			results = append(results, doctor.Result{Status: doctor.Fail, Name: "aws-config", Detail: err.Error(), Fix: "correct the AWS settings (AWS_PROFILE, AWS_CONFIG_FILE...)"})
		} else {
			a.Bucket, a.Table, a.KeyPrefix, a.Archive = bucket, table, keyPrefix, archive
			results = append(results, a.Check(ctx)...)
		}
	}
	if watch != "" {
		results = append(results, folderChecks(ctx, userName, watch, archive)...)
	}
	results = append(results, doctor.Web{URL: webURL, ResolverBase: strings.TrimSuffix(resolverBase, "/")}.Check(ctx)...)

	doctor.Print(stdout, results)
	if doctor.Passed(results) {
		return 0
	}
	return 1
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// serviceAWSFiles points the SDK's shared config and credentials files at
// the service user's home, as the unit runs the agent (User=, so HOME is
// that user's home; ProtectHome=yes, so nothing under /home, /root or
// /run/user), when doctor runs as root and neither the env file nor the
// environment names them: root's own ~/.aws, where "aws configure" put the
// keys that deployed the stack, must not pass the service's credentials.
// Set here, not through HOME: the SDK fixes its default file names from
// HOME when it is loaded.
func serviceAWSFiles(userName string, lookup func(string) string) {
	u, err := user.Lookup(userName)
	if err != nil || u.Uid == "0" {
		return
	}
	home := u.HomeDir
	for _, hidden := range []string{"/home", "/root", "/run/user"} {
		if home == "" || home == hidden || strings.HasPrefix(home, hidden+"/") {
			home = "/nonexistent"
		}
	}
	for key, name := range map[string]string{"AWS_SHARED_CREDENTIALS_FILE": "credentials", "AWS_CONFIG_FILE": "config"} {
		if lookup(key) == "" {
			os.Setenv(key, filepath.Join(home, ".aws", name))
		}
	}
}

// readEnvFile reads the settings file: path, or the default one when it
// exists; "none" reads none.
func readEnvFile(path string, getenv func(string) string) (map[string]string, doctor.Result) {
	const name = "env-file"
	explicit := path != ""
	if path == "none" {
		return nil, doctor.Result{Status: doctor.Skip, Name: name, Detail: "--env-file none: settings from the flags and the environment only"}
	}
	if path == "" {
		path = defaultEnvFile
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
	case !explicit && errors.Is(err, os.ErrNotExist):
		return nil, doctor.Result{Status: doctor.Skip, Name: name, Detail: path + " does not exist: settings from the flags and the environment only"}
	case errors.Is(err, os.ErrPermission):
		return nil, doctor.Result{Status: doctor.Fail, Name: name, Detail: fmt.Sprintf("%s is not readable as uid %d: %v", path, os.Geteuid(), err),
			Fix: "run doctor as root (sudo offload-agent doctor), as the service's settings are readable by root and the offload group only"}
	default:
		return nil, doctor.Result{Status: doctor.Fail, Name: name, Detail: err.Error(), Fix: "give --env-file an existing file, or none"}
	}
	env, err := setup.ParseEnvFile(b)
	if err != nil {
		return nil, doctor.Result{Status: doctor.Fail, Name: name, Detail: fmt.Sprintf("%s: %v", path, err), Fix: "KEY=VALUE lines and # comments, as systemd's EnvironmentFile= reads them"}
	}
	r := doctor.Result{Status: doctor.OK, Name: name, Detail: fmt.Sprintf("%s: %d settings (they win over this shell's environment, as under systemd)", path, len(env))}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 && (env["AWS_SECRET_ACCESS_KEY"] != "" || env["AWS_SESSION_TOKEN"] != "") {
		r = doctor.Result{Status: doctor.Fail, Name: name, Detail: fmt.Sprintf("%s holds an access key and is readable by every local user (mode %04o)", path, fi.Mode().Perm()),
			Fix: fmt.Sprintf("chown root:offload %s && chmod 0640 %s, and rotate the key", path, path)}
	}
	return env, r
}

// customEndpoint reports whether an AWS_ENDPOINT_URL* points the SDK away
// from AWS.
func customEndpoint(getenv func(string) string) bool {
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_STS"} {
		if getenv(k) != "" {
			return true
		}
	}
	return false
}

// stsEndpoint is where STS is asked, when not where the SDK would: with
// only AWS_ENDPOINT_URL_S3 set (the local stack), the S3 endpoint, as MinIO
// serves its STS there; otherwise the SDK's own choice ("" here):
// AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, or AWS.
func stsEndpoint(getenv func(string) string) string {
	if getenv("AWS_ENDPOINT_URL_STS") == "" && getenv("AWS_ENDPOINT_URL") == "" {
		return getenv("AWS_ENDPOINT_URL_S3")
	}
	return ""
}

// startCallAttempts: doctor and the start-up check make each call at most
// twice: a refusal is not retried by the SDK anyway, and an unreachable
// endpoint should be said within seconds, not after the agent's retries.
const startCallAttempts = 2

// loadAWSConfig loads the SDK configuration as the agent does (its chain,
// its dial timeout), with fewer retries.
func loadAWSConfig(ctx context.Context) (aws.Config, error) {
	return sdkConfig(ctx, startCallAttempts, func(t *http.Transport) { t.ResponseHeaderTimeout = 30 * time.Second })
}

func stsClient(cfg aws.Config, getenv func(string) string) *sts.Client {
	return sts.NewFromConfig(cfg, func(o *sts.Options) {
		if e := stsEndpoint(getenv); e != "" {
			o.BaseEndpoint = aws.String(e)
		}
	})
}

func doctorAWS(ctx context.Context, getenv func(string) string, pathStyle string) (doctor.AWS, error) {
	cfg, err := loadAWSConfig(ctx)
	if err != nil {
		return doctor.AWS{}, err
	}
	ps := getenv("AWS_ENDPOINT_URL_S3") != "" || getenv("AWS_ENDPOINT_URL") != ""
	if pathStyle != "auto" {
		if ps, err = strconv.ParseBool(pathStyle); err != nil {
			return doctor.AWS{}, fmt.Errorf("--s3-path-style %q: want true, false or auto", pathStyle)
		}
	}
	return doctor.AWS{
		Config:         cfg,
		S3:             s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = ps }),
		DynamoDB:       dynamodb.NewFromConfig(cfg),
		STS:            stsClient(cfg, getenv),
		CustomEndpoint: customEndpoint(getenv),
	}, nil
}

// folderChecks runs the folder checks as the service user: in a child
// process with that user's uid, gid and groups when doctor runs as root
// (with CAP_LEASE, as the unit's AmbientCapabilities= grants it), else in
// this process as its own user, and says so.
func folderChecks(ctx context.Context, userName, watch, archive string) []doctor.Result {
	if os.Geteuid() != 0 {
		res := doctor.Folders{Watch: watch, Archive: archive}.Check()
		me, _ := user.Current()
		if me == nil || me.Username != userName {
			res = append([]doctor.Result{{Status: doctor.Skip, Name: "service-user",
				Detail: fmt.Sprintf("not root: the folders are checked as uid %d, not as %s (run doctor as root to check as %s)", os.Geteuid(), userName, userName)}}, res...)
		}
		return res
	}
	u, err := user.Lookup(userName)
	if err != nil {
		return []doctor.Result{{Status: doctor.Fail, Name: "service-user", Detail: fmt.Sprintf("%s: %v", userName, err),
			Fix: "install the package (it adds the offload user), or: adduser --system --group --no-create-home offload"}}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	head := doctor.Result{Status: doctor.OK, Name: "service-user", Detail: fmt.Sprintf("%s (uid %d, gid %d, groups %v)", userName, uid, gid, groups)}
	if uid == 0 {
		return append([]doctor.Result{head}, doctor.Folders{Watch: watch, Archive: archive}.Check()...)
	}
	// A file of root's in the watch folder: the service user may lease it
	// only with CAP_LEASE.
	// Other users may write in the watch folder (the back-end's user, group
	// offload): the name is random and the file is made with O_EXCL and
	// O_NOFOLLOW, so a link or file planted there is never followed,
	// truncated or chowned by root; the owner is set on the file made.
	var foreign string
	if fi, err := os.Stat(watch); err == nil && fi.IsDir() {
		foreign = filepath.Join(watch, ".offload-doctor-foreign-"+rand.Text())
		w, err := os.OpenFile(foreign, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o644)
		if err != nil {
			foreign = ""
		} else {
			w.Chown(0, 0)
			w.Close()
			defer os.Remove(foreign)
		}
	}
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	cmd := exec.CommandContext(ctx, self, "doctor", "--folders-child", "--env-file", "none", "--watch", watch, "--archive", archive, "--foreign-file", foreign)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups},
		AmbientCaps: []uintptr{unix.CAP_LEASE},
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res []doctor.Result
	if err == nil {
		err = json.Unmarshal(out, &res)
	}
	if err != nil {
		return []doctor.Result{head, {Status: doctor.Fail, Name: "folders", Detail: fmt.Sprintf("the checks as %s did not run: %v %s", userName, err, strings.TrimSpace(stderr.String())),
			Fix: "see the error"}}
	}
	return append([]doctor.Result{head}, res...)
}
