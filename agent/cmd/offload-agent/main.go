// Command offload-agent moves a web site's uploaded originals to S3: it
// watches a folder and takes every finished file through upload → verify →
// record → archive. See "offload-agent help".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/agent"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run returns the exit status: 0 done, 1 failed or incomplete, 2 bad usage
// or configuration, 4 AWS refused the credentials or (once) could not be
// reached at start.
func run(args []string) int {
	if code, handled := dispatch(args, os.Getenv, os.Stdout, os.Stderr); handled {
		return code
	}
	cmd := args[0]
	opts, ok, code := parseAgentFlags(newCommandLine(cmd), args[1:], os.Getenv, os.Stdout, os.Stderr)
	if !ok {
		return code
	}
	// "once" on a terminal keeps a progress line under the log lines; on
	// anything else (a pipe, a file, the journal) only plain log lines.
	var term *terminal
	logTo := io.Writer(os.Stderr)
	if cmd == "once" && isTerminal(os.Stderr) {
		term = &terminal{w: os.Stderr}
		logTo = term
	}
	log := newLogger(logTo, opts.logFormat, opts.logLevel)
	cfg := opts.agent
	cfg.Logger = log
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "offload-agent: bad configuration: %v\n", oneLine(err))
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if !cfg.DryRun {
		if code := startCheck(ctx, log, cmd, cfg.Bucket, cfg.WithDefaults().Mapping.KeyPrefix, opts.pathStyle); code != 0 {
			return code
		}
	}
	s3c, db, err := awsClients(ctx, opts.pathStyle, inFlight(cfg.WithDefaults()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "offload-agent: %v\n", err)
		return 2
	}
	a, err := agent.New(cfg, s3c, db)
	if err != nil {
		fmt.Fprintf(os.Stderr, "offload-agent: %v\n", oneLine(err))
		return 2
	}
	defer a.Close()
	if opts.metrics != "" {
		// Bound before the work starts, so a taken port is a bad
		// configuration (status 2), not a surprise later.
		ln, err := net.Listen("tcp", opts.metrics)
		if err != nil {
			fmt.Fprintf(os.Stderr, "offload-agent: --metrics-addr: %v\n", err)
			return 2
		}
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("operations endpoints", "address", ln.Addr().String(), "paths", "/metrics /healthz /readyz /status")
	}

	// A taken socket, like a taken port, is a bad configuration.
	stopSocket, err := serveStatusSocket(statusSocketSetting(cmd, opts.statusSocket), a, log, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "offload-agent: %v\n", err)
		return 2
	}
	defer stopSocket()
	stopNotify := startNotify(ctx, cfg.WithDefaults().Grace, a, log, os.Getenv)
	defer stopNotify()

	log.Info("offload-agent starting", "mode", cmd, "watch", cfg.Watch, "bucket", cfg.Bucket, "table", cfg.Table, "after", string(cfg.After))
	if cmd == "once" {
		if term != nil {
			stopProgress, progressDone := make(chan struct{}), make(chan struct{})
			go showProgress(term, a, stopProgress, progressDone)
			err = a.Once(ctx)
			close(stopProgress)
			<-progressDone
		} else {
			err = a.Once(ctx)
		}
	} else {
		err = a.Run(ctx)
	}
	s := a.Stats()
	log.Info("offload-agent stopped", "uploaded", s.Uploaded.Load(), "bytes", s.Bytes.Load(),
		"conflicts", s.Conflicts.Load(), "refused", s.Refused.Load(), "failed_attempts", s.Failures.Load())
	if err != nil {
		log.Error("offload-agent", "err", err)
		return 1
	}
	return 0
}

// Client settings, set once for every call the agent makes.
const (
	// sdkMaxAttempts: the SDK retries a throttled, 5xx or reset call a few
	// times within seconds; longer outages are the per-file backoff's job,
	// which never gives up, so more attempts here would only hold a worker.
	sdkMaxAttempts = 4
	sdkMaxBackoff  = 2 * time.Second
	// dialTimeout: a host that does not accept a connection on a healthy
	// network within this is down; the call fails fast and is retried.
	dialTimeout = 5 * time.Second
	// responseHeaderTimeout: the time S3 or DynamoDB may take to start
	// answering once a request is sent (S3 answers a long
	// CompleteMultipartUpload at once and keeps the connection alive).
	responseHeaderTimeout = time.Minute
)

// inFlight is how many requests the agent may have open to one host at
// once: one per worker (a PutObject, or a ledger write), plus the parts the
// memory budget holds beyond one per worker.
func inFlight(cfg agent.Config) int { return cfg.Workers + cfg.Concurrency }

// awsClients builds the S3 and DynamoDB clients once, from the SDK's own
// configuration chain (AWS_REGION, AWS_ENDPOINT_URL_S3, credentials...).
// The connection pool keeps conns idle connections per host, so a burst of
// small files reuses them instead of paying a TLS handshake (two more round
// trips) each; Go's default keeps 2, the SDK's 10.
func awsClients(ctx context.Context, pathStyle bool, conns int) (*s3.Client, *dynamodb.Client, error) {
	cfg, err := sdkConfig(ctx, sdkMaxAttempts, func(t *http.Transport) {
		t.ResponseHeaderTimeout = responseHeaderTimeout
		t.MaxIdleConnsPerHost = conns
		t.MaxIdleConns = 2 * conns // S3 and DynamoDB
	})
	if err != nil {
		return nil, nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, nil, errors.New("AWS region: not set (AWS_REGION or the shared config)")
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	return s3c, dynamodb.NewFromConfig(cfg), nil
}

// commandAgent is the agent a one-shot command (audit, prune) works
// through: the SDK clients built as run builds them, then agent.New, whose
// error is one line.
func commandAgent(ctx context.Context, cfg agent.Config, pathStyle bool) (*agent.Agent, error) {
	s3c, db, err := awsClients(ctx, pathStyle, inFlight(cfg.WithDefaults()))
	if err != nil {
		return nil, err
	}
	a, err := agent.New(cfg, s3c, db)
	if err != nil {
		return nil, errors.New(oneLine(err))
	}
	return a, nil
}

// sdkConfig loads the SDK's configuration chain with the agent's dial
// timeout, the standard retryer at most attempts times, and the transport
// as tune sets it. It is the SDK's buildable client, not a plain
// *http.Client: that is what the SDK needs to apply AWS_CA_BUNDLE.
func sdkConfig(ctx context.Context, attempts int, tune func(*http.Transport)) (aws.Config, error) {
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dialTimeout }).
		WithTransportOptions(tune)
	return config.LoadDefaultConfig(ctx,
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = sdkMaxBackoff
			})
		}),
	)
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// oneLine joins a multi-error's lines with "; " for a one-line refusal.
func oneLine(err error) string {
	s := err.Error()
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, "; "...)
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

// versionLine is what "offload-agent version" prints: the module version
// (the git tag, or a pseudo-version of the commit), the revision and
// whether the checkout had uncommitted changes, and the Go version.
func versionLine(b agent.Build) string {
	rev := b.Revision
	if rev == "" {
		rev = "unknown"
	}
	if b.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("offload-agent %s (revision %s, %s)", b.Version, rev, b.GoVersion)
}
