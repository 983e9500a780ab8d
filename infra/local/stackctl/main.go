// Command stackctl runs the real local AWS stack the tests, the benchmarks and
// the demo use: MinIO (or versitygw) for S3, dynalite for DynamoDB, and
// Toxiproxy for faults, each on 127.0.0.1 on a free port. It installs them on
// first use into a cache folder and keeps the PIDs it started in a state
// folder, so that "down" stops exactly those processes.
//
// It is run through infra/local/stack, which builds it; see usage below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

const usage = `usage: infra/local/stack COMMAND [flags]

The real local AWS stack on 127.0.0.1: MinIO (S3), dynalite (DynamoDB) and
Toxiproxy, each on a free port, with the bucket and the ledger table created.

commands:
  up [--tls] [--kms] [--s3 minio|versitygw] [--bench-tools]
                 install what is missing, start the stack, wait until every
                 part answers; safe to run twice. --kms runs MinIO with a
                 static KMS key and makes the bucket's default encryption
                 SSE-KMS with it. --bench-tools also builds s5cmd and rclone
                 (OFFLOAD_S5CMD, OFFLOAD_RCLONE)
  down           stop exactly the processes "up" started (by PID) and
                 delete the stack's data
  env            print export lines for the running stack:
                   eval "$(infra/local/stack env)"
  status         print each part, its PID and address, and whether it answers;
                 exits 1 unless the whole stack is up
  install        only install the tools (MinIO, dynalite, Toxiproxy,
                 aws-lambda-rie, lighttpd, nginx, apache2)
  edge [flags]   serve a local CloudFront edge in front of the bucket
                 (infra/local/edge); "stackctl edge -h" lists its flags
  run [--tls] [--kms] [--s3 KIND] [--bench-tools] -- COMMAND [ARG...]
                 bring up a private stack, run COMMAND with its environment,
                 and bring it down again, even when COMMAND fails or is
                 interrupted; exits with COMMAND's status

environment:
  OFFLOAD_CACHE      tool cache (default: .cache in the repository)
  OFFLOAD_STACK_DIR  state folder of the stack (default: $OFFLOAD_CACHE/stack)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	code, err := dispatch(cmd, args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stack %s: %v\n", cmd, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func dispatch(cmd string, args []string) (int, error) {
	paths, err := defaultPaths()
	if err != nil {
		return 1, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0, nil
	case "install":
		_, err := install(ctx, paths, "minio", false)
		return 0, err
	case "up":
		opts, rest, err := parseUpFlags("up", args)
		if err != nil {
			return 2, err
		}
		if len(rest) > 0 {
			return 2, fmt.Errorf("unexpected arguments %q", rest)
		}
		st, err := up(ctx, paths, opts)
		if err != nil {
			return 1, err
		}
		fmt.Fprintf(os.Stderr, "stack is up (%s); eval \"$(infra/local/stack env)\" to use it\n", st.summary())
		return 0, nil
	case "down":
		return 0, down(paths.state)
	case "env":
		st, err := loadState(paths.state)
		if err != nil {
			return 1, err
		}
		fmt.Print(st.exports())
		return 0, nil
	case "status":
		return status(ctx, paths.state, os.Stdout)
	case "aws-shim": // started by "up" as a service of the stack
		return runAWSShim(args)
	case "edge": // a local CloudFront edge; stacktest.StartEdge starts one per test
		return runEdge(args)
	case "secrets-manager": // started by tests that read a secret (stacktest.StartSecretsManager)
		return runSecretsManager(args)
	case "supervise":
		// Not in the usage: it is how "up" runs dynalite (supervise.go).
		return supervise(ctx, args)
	case "run":
		opts, rest, err := parseUpFlags("run", args)
		if err != nil {
			return 2, err
		}
		if len(rest) == 0 {
			return 2, errors.New("run needs a command after --")
		}
		return run(ctx, paths, opts, rest)
	default:
		fmt.Fprint(os.Stderr, usage)
		return 2, fmt.Errorf("unknown command %q", cmd)
	}
}

// upOptions are the flags of "up" and "run".
type upOptions struct {
	tls        bool
	kms        bool
	s3Kind     string
	benchTools bool
}

func parseUpFlags(name string, args []string) (upOptions, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o upOptions
	fs.BoolVar(&o.tls, "tls", false, "serve S3 over HTTPS with a self-signed certificate")
	fs.BoolVar(&o.kms, "kms", false, "encrypt the bucket with SSE-KMS, MinIO's static key (minio only)")
	fs.StringVar(&o.s3Kind, "s3", "minio", "S3 implementation: minio or versitygw")
	fs.BoolVar(&o.benchTools, "bench-tools", false, "also install s5cmd and rclone, the peers make bench measures")
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	if o.s3Kind != "minio" && o.s3Kind != "versitygw" {
		return o, nil, fmt.Errorf("--s3 %q: want minio or versitygw", o.s3Kind)
	}
	if o.kms && o.s3Kind != "minio" {
		return o, nil, errors.New("--kms needs --s3 minio (versitygw has no KMS)")
	}
	return o, fs.Args(), nil
}

// run brings up a private stack in a fresh state folder, runs the command
// with the stack's environment and always brings the stack down again.
func run(ctx context.Context, paths stackPaths, opts upOptions, argv []string) (int, error) {
	dir, err := os.MkdirTemp("", "offload-stack-run-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	paths.state = dir

	st, upErr := up(ctx, paths, opts)
	defer func() {
		if err := down(paths.state); err != nil {
			fmt.Fprintf(os.Stderr, "stack run: down: %v\n", err)
		}
	}()
	if upErr != nil {
		return 1, upErr
	}
	fmt.Fprintf(os.Stderr, "stack is up (%s)\n", st.summary())

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), st.environ()...)
	if err := cmd.Start(); err != nil {
		return 127, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Pass the interrupt on and let the command finish its own cleanup.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err = <-done
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if exit.ExitCode() < 0 {
			return 1, fmt.Errorf("%s: %v", argv[0], err)
		}
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// stackPaths are the folders the stack uses.
type stackPaths struct {
	repo  string // repository root
	cache string // installed tools
	state string // PIDs, addresses, logs, certificates of one stack
}

func defaultPaths() (stackPaths, error) {
	repo := os.Getenv("OFFLOAD_REPO")
	if repo == "" {
		wd, err := os.Getwd()
		if err != nil {
			return stackPaths{}, err
		}
		repo = wd
	}
	p := stackPaths{repo: repo, cache: os.Getenv("OFFLOAD_CACHE"), state: os.Getenv("OFFLOAD_STACK_DIR")}
	if p.cache == "" {
		p.cache = filepath.Join(repo, ".cache")
	}
	if p.state == "" {
		p.state = filepath.Join(p.cache, "stack")
	}
	var err error
	if p.cache, err = filepath.Abs(p.cache); err != nil {
		return p, err
	}
	p.state, err = filepath.Abs(p.state)
	return p, err
}
