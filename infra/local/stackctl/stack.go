package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The stack's fixed names and loopback-only credentials. They protect nothing:
// every server listens on 127.0.0.1 and keeps its data in a temp folder.
const (
	region    = "us-east-1"
	accessKey = "offloadlocal"
	secretKey = "offloadlocal-secret" // MinIO wants at least 8 characters
	bucket    = "offload-originals"
	table     = "offload-ledger"

	// startTimeout bounds how long a freshly started server may take to
	// answer its health check; MinIO's first start formats its data folder.
	startTimeout = 60 * time.Second
	// stopTimeout is how long a server gets to exit after SIGTERM before
	// it is killed.
	stopTimeout = 10 * time.Second
)

// service is one process the stack started.
type service struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// StartTicks is the process's start time from /proc/PID/stat; with the
	// PID it tells our process from a later one that reused the PID.
	StartTicks uint64 `json:"start_ticks"`
	Addr       string `json:"addr"`
	Log        string `json:"log"`
}

// state is what "up" records and "down", "env" and "status" read.
type state struct {
	S3Kind string `json:"s3_kind"`
	TLS    bool   `json:"tls"`
	// KMS: MinIO runs with a static KMS key, kept in KMSKeyFile
	// (name:base64, mode 0600), and the bucket's default encryption is
	// SSE-KMS with it (kms.go).
	KMS              bool      `json:"kms"`
	KMSKeyFile       string    `json:"kms_key_file,omitempty"`
	CAFile           string    `json:"ca_file,omitempty"`
	DataDir          string    `json:"data_dir"`
	S3Endpoint       string    `json:"s3_endpoint"`
	DynamoDBEndpoint string    `json:"dynamodb_endpoint"`
	ToxiproxyURL     string    `json:"toxiproxy_url"`
	ToxiproxyCLI     string    `json:"toxiproxy_cli"`
	RIE              string    `json:"aws_lambda_rie"`
	MinIO            string    `json:"minio"`
	S5cmd            string    `json:"s5cmd,omitempty"`
	Rclone           string    `json:"rclone,omitempty"`
	Services         []service `json:"services"`
	// DynaliteRestarts is the file where dynalite's supervisor records
	// each restart, one line each (supervise.go).
	DynaliteRestarts string `json:"dynalite_restarts,omitempty"`
	// Components holds the agent's, the resolver's, the audit's, the eraser's
	// and the CloudFront edge's credentials, each restricted to what template.yaml grants it.
	Components map[string]componentCreds `json:"components,omitempty"`
	// AWSShimEndpoint is MinIO behind the AWS shim (see awsshim.go).
	AWSShimEndpoint string `json:"aws_shim_endpoint,omitempty"`
	dir             string
	repo            string
}

var errNotUp = errors.New("the stack is not up (run: infra/local/stack up)")

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

func loadState(dir string) (*state, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotUp
	}
	if err != nil {
		return nil, err
	}
	st := &state{dir: dir}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	return st, nil
}

// save writes the state atomically, so a crash never leaves half a file.
func (st *state) save() error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(st.dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(st.dir))
}

// env is the stack's environment in a fixed order.
func (st *state) env() [][2]string {
	e := [][2]string{
		{"AWS_ENDPOINT_URL_S3", st.S3Endpoint},
		{"AWS_ENDPOINT_URL_DYNAMODB", st.DynamoDBEndpoint},
		{"AWS_REGION", region},
		{"AWS_ACCESS_KEY_ID", accessKey},
		{"AWS_SECRET_ACCESS_KEY", secretKey},
		// No instance metadata look-ups: nothing may leave loopback.
		{"AWS_EC2_METADATA_DISABLED", "true"},
		{"OFFLOAD_BUCKET", bucket},
		{"OFFLOAD_TABLE", table},
		{"TOXIPROXY_URL", st.ToxiproxyURL},
		{"OFFLOAD_TOXIPROXY_CLI", st.ToxiproxyCLI},
		{"OFFLOAD_AWS_LAMBDA_RIE", st.RIE},
		{"OFFLOAD_STACK_S3", st.S3Kind},
		{"OFFLOAD_MINIO", st.MinIO},
		{"OFFLOAD_DYNALITE_RESTARTS", st.DynaliteRestarts},
	}
	if st.CAFile != "" {
		e = append(e, [2]string{"AWS_CA_BUNDLE", st.CAFile})
	}
	if st.AWSShimEndpoint != "" {
		e = append(e, [2]string{"OFFLOAD_AWS_SHIM_S3", st.AWSShimEndpoint})
	}
	if st.KMSKeyFile != "" {
		e = append(e, [2]string{"OFFLOAD_KMS_KEY_FILE", st.KMSKeyFile})
	}
	for _, name := range sortedKeys(st.Components) {
		c, p := st.Components[name], "OFFLOAD_"+strings.ToUpper(name)+"_"
		e = append(e, [2]string{p + "AWS_ACCESS_KEY_ID", c.AccessKeyID}, [2]string{p + "AWS_SECRET_ACCESS_KEY", c.SecretAccessKey},
			[2]string{p + "AWS_SESSION_TOKEN", c.SessionToken})
	}
	if st.S5cmd != "" {
		e = append(e, [2]string{"OFFLOAD_S5CMD", st.S5cmd}, [2]string{"OFFLOAD_RCLONE", st.Rclone})
	}
	return e
}

func (st *state) exports() string {
	var b strings.Builder
	for _, kv := range st.env() {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return b.String()
}

func (st *state) environ() []string {
	var out []string
	for _, kv := range st.env() {
		out = append(out, kv[0]+"="+kv[1])
	}
	return out
}

func (st *state) summary() string {
	var parts []string
	for _, s := range st.Services {
		parts = append(parts, fmt.Sprintf("%s %s", s.Name, s.Addr))
	}
	if st.CAFile != "" {
		parts = append(parts, "TLS CA "+st.CAFile+" (exported as AWS_CA_BUNDLE)")
	}
	if st.KMS {
		parts = append(parts, "SSE-KMS with the key in "+st.KMSKeyFile)
	}
	return strings.Join(parts, ", ")
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// up starts the stack unless a healthy one with the same options is already
// running in the state folder.
func up(ctx context.Context, p stackPaths, opts upOptions) (*state, error) {
	if old, err := loadState(p.state); err == nil {
		old.dir = p.state
		if healthy(ctx, old) == nil {
			if old.TLS != opts.tls || old.S3Kind != opts.s3Kind || old.KMS != opts.kms {
				return nil, fmt.Errorf("a stack with --s3 %s (tls %v, kms %v) is already up; run down first", old.S3Kind, old.TLS, old.KMS)
			}
			fmt.Fprintln(os.Stderr, "stack: already up")
			return old, nil
		}
		fmt.Fprintln(os.Stderr, "stack: an earlier stack is half up; stopping what is left of it")
		if err := down(p.state); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, errNotUp) {
		return nil, err
	}

	t, err := install(ctx, p, opts.s3Kind, opts.benchTools)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.state, 0o755); err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp("", "offload-stack-data-")
	if err != nil {
		return nil, err
	}
	st := &state{dir: p.state, repo: p.repo, S3Kind: opts.s3Kind, TLS: opts.tls, KMS: opts.kms, DataDir: data,
		ToxiproxyCLI: toxiproxyCLI.path(p.cache), RIE: rieTool.path(p.cache), MinIO: minioTool.path(p.cache),
		S5cmd: t.s5cmd, Rclone: t.rclone}
	if err := st.save(); err != nil {
		return nil, err
	}
	if err := start(ctx, st, t); err != nil {
		if derr := down(p.state); derr != nil {
			fmt.Fprintf(os.Stderr, "stack: cleaning up after a failed start: %v\n", derr)
		}
		return nil, err
	}
	return st, nil
}

// start starts every server, records each PID as soon as it exists, and
// waits until all of them answer and the bucket and table exist.
func start(ctx context.Context, st *state, t tools) error {
	scheme := "http"
	if st.TLS {
		scheme = "https"
		ca, err := makeCertificates(filepath.Join(st.dir, "certs"))
		if err != nil {
			return err
		}
		st.CAFile = ca
	}
	base := append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")

	s3Port, err := freePort()
	if err != nil {
		return err
	}
	s3Addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s3Port))
	st.S3Endpoint = scheme + "://" + s3Addr
	switch st.S3Kind {
	case "minio":
		console, err := freePort()
		if err != nil {
			return err
		}
		args := []string{t.s3Server, "server", "--quiet", "--address", s3Addr,
			"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(console))}
		if st.TLS {
			args = append(args, "--certs-dir", filepath.Join(st.dir, "certs"))
		}
		args = append(args, filepath.Join(st.DataDir, "minio"))
		env := append(base, "MINIO_ROOT_USER="+accessKey, "MINIO_ROOT_PASSWORD="+secretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION="+region)
		if st.KMS {
			kmsEnv, err := st.makeKMSKey()
			if err != nil {
				return err
			}
			env = append(env, kmsEnv)
		}
		if err := st.startProcess("minio", s3Addr, env, args...); err != nil {
			return err
		}
	case "versitygw":
		dir := filepath.Join(st.DataDir, "versitygw")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		args := []string{t.s3Server, "--access", accessKey, "--secret", secretKey,
			"--region", region, "--port", s3Addr, "--quiet"}
		if st.TLS {
			certs := filepath.Join(st.dir, "certs")
			args = append(args, "--cert", filepath.Join(certs, "public.crt"), "--key", filepath.Join(certs, "private.key"))
		}
		args = append(args, "posix", dir)
		if err := st.startProcess("versitygw", s3Addr, base, args...); err != nil {
			return err
		}
	}

	dynPort, err := freePort()
	if err != nil {
		return err
	}
	dynAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(dynPort))
	st.DynamoDBEndpoint = "http://" + dynAddr
	// Tables are ACTIVE at once: dynalite's default half-second delay only
	// slows every test that makes a table. dynalite dies when a client
	// aborts a request mid-body, so it runs under a supervisor that starts
	// it again on the same port, and keeps its data on disk (--path; it is
	// in memory otherwise), so the table and the items survive a restart.
	st.DynaliteRestarts = filepath.Join(st.dir, "dynalite.restarts")
	dynArgv, err := supervisedArgv("dynalite", st.DynaliteRestarts, t.node, t.dynalite,
		"--host", "127.0.0.1", "--port", strconv.Itoa(dynPort), "--path", filepath.Join(st.DataDir, "dynalite"),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	if err != nil {
		return err
	}
	if err := st.startProcess("dynalite", dynAddr, base, dynArgv...); err != nil {
		return err
	}

	toxPort, err := freePort()
	if err != nil {
		return err
	}
	toxAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(toxPort))
	st.ToxiproxyURL = "http://" + toxAddr
	if err := st.startProcess("toxiproxy", toxAddr, base, t.toxiproxy,
		"-host", "127.0.0.1", "-port", strconv.Itoa(toxPort)); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := waitHealthy(ctx, st); err != nil {
		return err
	}
	if err := createResources(ctx, st); err != nil {
		return err
	}
	if st.S3Kind == "minio" {
		return startAWSShim(ctx, st)
	}
	return nil
}

// startAWSShim starts MinIO's AWS shim (awsshim.go) for the components'
// credentials, once they exist.
func startAWSShim(ctx context.Context, st *state) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var noList, noVersion, noGet, noDelete, noDeleteVersion []string
	var noDecrypt, noGenerate []string
	for _, name := range sortedKeys(st.Components) {
		c := st.Components[name]
		if !c.ListBucket {
			noList = append(noList, c.AccessKeyID)
		}
		if !c.GetObjectVersion {
			noVersion = append(noVersion, c.AccessKeyID)
		}
		if !c.GetObject {
			noGet = append(noGet, c.AccessKeyID)
		}
		if !c.DeleteObject {
			noDelete = append(noDelete, c.AccessKeyID)
		}
		if !c.DeleteObjectVersion {
			noDeleteVersion = append(noDeleteVersion, c.AccessKeyID)
		}
		if !c.KMSDecrypt {
			noDecrypt = append(noDecrypt, c.AccessKeyID)
		}
		if !c.KMSGenerateDataKey {
			noGenerate = append(noGenerate, c.AccessKeyID)
		}
	}
	args := []string{self, "aws-shim", "--listen", addr, "--upstream", st.S3Endpoint, "--bucket", bucket,
		"--no-list-bucket", strings.Join(noList, ","), "--no-get-object-version", strings.Join(noVersion, ","),
		"--no-get-object", strings.Join(noGet, ","), "--no-delete-object", strings.Join(noDelete, ","),
		"--no-delete-object-version", strings.Join(noDeleteVersion, ",")}
	if st.KMS {
		args = append(args, "--kms", "--no-kms-decrypt", strings.Join(noDecrypt, ","), "--no-kms-generate-data-key", strings.Join(noGenerate, ","))
	}
	// Over TLS the shim serves https with MinIO's certificate, so the
	// components and the URLs the resolver signs use https, as on AWS.
	scheme := "http"
	if st.TLS {
		certs := filepath.Join(st.dir, "certs")
		args = append(args, "--ca", st.CAFile, "--cert", filepath.Join(certs, "public.crt"), "--key", filepath.Join(certs, "private.key"))
		scheme = "https"
	}
	st.AWSShimEndpoint = scheme + "://" + addr
	if err := st.startProcess("aws-shim", addr, os.Environ(), args...); err != nil {
		return err
	}
	return waitHealthy(ctx, st)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// startProcess starts one server in its own process group, with its output
// in a log file, and records it in the state before anything else happens.
func (st *state) startProcess(name, addr string, env []string, argv ...string) error {
	logPath := filepath.Join(st.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, env
	// Its own process group: "down" signals the group, and an interrupt
	// meant for the caller's terminal does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go cmd.Wait() // reap it if it exits while this process still runs
	ticks, _ := startTicks(cmd.Process.Pid)
	st.Services = append(st.Services, service{Name: name, PID: cmd.Process.Pid, StartTicks: ticks, Addr: addr, Log: logPath})
	return st.save()
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procStat returns a process's state letter and start time from /proc.
func procStat(pid int) (state byte, ticks uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name in parentheses may contain spaces; fields start after it.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ticks, err = strconv.ParseUint(fields[19], 10, 64) // field 22: starttime
	return fields[0][0], ticks, err
}

func startTicks(pid int) (uint64, error) {
	_, t, err := procStat(pid)
	return t, err
}

// alive reports whether the service's process still runs and is the one we
// started (not a zombie, not a reused PID).
func (s service) alive() bool {
	state, ticks, err := procStat(s.PID)
	return err == nil && state != 'Z' && ticks == s.StartTicks
}

// down stops every recorded process (TERM, then KILL after stopTimeout),
// deletes the stack's data and forgets the state. Without a state it does
// nothing.
func down(dir string) error {
	st, err := loadState(dir)
	if errors.Is(err, errNotUp) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for i := len(st.Services) - 1; i >= 0; i-- {
		if err := stopService(st.Services[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if st.DataDir != "" {
		if err := os.RemoveAll(st.DataDir); err != nil {
			errs = append(errs, err)
		}
	}
	_ = os.RemoveAll(filepath.Join(dir, "certs"))
	if err := os.Remove(statePath(dir)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func stopService(s service) error {
	if !s.alive() {
		return nil
	}
	// Signal the process group the service leads; fall back to the PID.
	signal := func(sig syscall.Signal) {
		if err := syscall.Kill(-s.PID, sig); err != nil {
			_ = syscall.Kill(s.PID, sig)
		}
	}
	signal(syscall.SIGTERM)
	if waitGone(s, stopTimeout) {
		return nil
	}
	fmt.Fprintf(os.Stderr, "stack: %s (pid %d) ignored SIGTERM for %s; killing it\n", s.Name, s.PID, stopTimeout)
	signal(syscall.SIGKILL)
	if waitGone(s, stopTimeout) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) is still running after SIGKILL", s.Name, s.PID)
}

func waitGone(s service, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !s.alive() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !s.alive()
}

// status prints each service and whether it answers.
func status(ctx context.Context, dir string, w io.Writer) (int, error) {
	st, err := loadState(dir)
	if err != nil {
		return 1, err
	}
	code := 0
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, s := range st.Services {
		word := "up"
		if !s.alive() {
			word, code = "not running", 1
		} else if err := checkService(ctx, st, s); err != nil {
			word, code = "not answering: "+err.Error(), 1
		}
		fmt.Fprintf(w, "%-10s pid %-7d %-21s %s\n", s.Name, s.PID, s.Addr, word)
	}
	fmt.Fprintf(w, "%-10s %s (tls %v)\n%-10s %s\n%-10s %s\n", "s3", st.S3Endpoint, st.TLS, "dynamodb", st.DynamoDBEndpoint, "data", st.DataDir)
	return code, nil
}

// healthy reports whether every service runs and answers.
func healthy(ctx context.Context, st *state) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if len(st.Services) == 0 {
		return errNotUp
	}
	for _, s := range st.Services {
		if !s.alive() {
			return fmt.Errorf("%s is not running", s.Name)
		}
		if err := checkService(ctx, st, s); err != nil {
			return err
		}
	}
	return nil
}

// waitHealthy polls every service until it answers, or a service exits,
// or the context ends.
func waitHealthy(ctx context.Context, st *state) error {
	for _, s := range st.Services {
		for {
			if !s.alive() {
				return fmt.Errorf("%s exited at start; its log %s ends:\n%s", s.Name, s.Log, tail(s.Log))
			}
			err := checkService(ctx, st, s)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s did not answer on %s: %v; its log %s ends:\n%s", s.Name, s.Addr, err, s.Log, tail(s.Log))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// checkService sends the service's health request.
func checkService(ctx context.Context, st *state, s service) error {
	client, err := httpClient(st)
	if err != nil {
		return err
	}
	var req *http.Request
	switch s.Name {
	case "minio":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, st.S3Endpoint+"/minio/health/live", nil)
	case "versitygw":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, st.S3Endpoint+"/", nil)
	case "toxiproxy":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, st.ToxiproxyURL+"/version", nil)
	case "aws-shim":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, st.AWSShimEndpoint+"/minio/health/live", nil)
	case "dynalite":
		// DynamoDB's wire protocol: a POST naming the operation.
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, st.DynamoDBEndpoint+"/", strings.NewReader("{}"))
		if err == nil {
			req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
			req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		}
	default:
		return fmt.Errorf("unknown service %q", s.Name)
	}
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	// Unsigned requests to versitygw and dynalite are refused with a 4xx,
	// which still proves the server is serving; a 5xx means it is not ready.
	if resp.StatusCode >= 500 || (s.Name == "minio" || s.Name == "toxiproxy" || s.Name == "aws-shim") && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", s.Name, resp.Status)
	}
	return nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}
