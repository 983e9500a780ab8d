// Command offload-resolver answers requests for originals that moved to S3
// with a 302 to a short-lived presigned URL. Under Lambda (when
// AWS_LAMBDA_RUNTIME_API is set) it serves Function URL events; otherwise it
// serves plain HTTP on --listen. "offload-resolver sign" makes signed links.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/lambda"
)

const usage = `offload-resolver answers GET/HEAD /static/NAME with a 302 to a presigned S3 URL
(with --cdn-url, to a CloudFront signed URL).

usage:
  offload-resolver [flags]                  serve HTTP on --listen (under Lambda: Function URL events)
  offload-resolver sign [--expires 1h] PATH print PATH?exp=...&sig=... signed with OFFLOAD_SIGNING_KEY

Settings (flags for the local server; under Lambda only the environment):
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "sign" {
		return sign(args[1:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("offload-resolver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opt := func(name, env, def, help string) *string {
		v := getenv(env)
		if v == "" {
			v = def
		}
		return fs.String(name, v, help+" (env "+env+")")
	}
	var (
		listen    = opt("listen", "OFFLOAD_LISTEN", "127.0.0.1:8080", "address of the local HTTP server")
		bucket    = opt("bucket", "OFFLOAD_BUCKET", "", "S3 bucket of the originals (required)")
		table     = opt("table", "OFFLOAD_TABLE", "", "DynamoDB ledger table (required unless --verify none)")
		keyPrefix = opt("key-prefix", "OFFLOAD_KEY_PREFIX", offload.DefaultMapping.KeyPrefix, "prefix of every object key")
		urlPrefix = opt("url-prefix", "OFFLOAD_URL_PREFIX", offload.DefaultMapping.URLPrefix, "URL path prefix the originals are requested under")
		expiry    = opt("expiry", "OFFLOAD_EXPIRY", lambda.DefaultExpiry.String(), "life of a presigned URL")
		verify    = opt("verify", "OFFLOAD_VERIFY", "ledger", "ledger: 404 unless the ledger knows the key; none: presign without looking")
		pathStyle = opt("s3-path-style", "OFFLOAD_S3_PATH_STYLE", "auto", "path-style S3 URLs: true, false, or auto (true with AWS_ENDPOINT_URL_S3)")
		logFormat = opt("log-format", "OFFLOAD_LOG_FORMAT", "json", "log format: json or text")
		cdnURL    = opt("cdn-url", envCDNURL, "", "CloudFront base URL (https://dxxxxxxxxxxxxx.cloudfront.net): redirect there with signed URLs instead of to S3; with --cdn-key-pair-id and --cdn-private-key-secret")
		cdnKeyID  = opt("cdn-key-pair-id", envCDNKeyPairID, "", "ID of the CloudFront public key the URLs are signed for (the stack's output CdnKeyPairId)")
		cdnSecret = opt("cdn-private-key-secret", envCDNSecret, "", "ARN or name of the Secrets Manager secret whose SecretString is the PEM private key")
	)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var log *slog.Logger
	if *logFormat == "text" {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	} else {
		log = slog.New(slog.NewJSONHandler(stderr, nil))
	}
	inLambda := getenv("AWS_LAMBDA_RUNTIME_API") != ""

	// The CDN settings reach build as the environment does, flags first.
	flagged := map[string]string{envCDNURL: *cdnURL, envCDNKeyPairID: *cdnKeyID, envCDNSecret: *cdnSecret}
	getenvOrFlag := func(k string) string {
		if v, ok := flagged[k]; ok {
			return v
		}
		return getenv(k)
	}
	h, err := build(context.Background(), log, getenvOrFlag, *bucket, *table, *keyPrefix, *urlPrefix, *expiry, *verify, *pathStyle)
	if err != nil {
		log.Error("offload-resolver: bad configuration: " + strings.ReplaceAll(err.Error(), "\n", "; "))
		if !inLambda {
			return 2
		}
		// Under Lambda, answer every request with a bare 500 rather than
		// crash-looping the init phase; the log line above says why.
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "internal error", http.StatusInternalServerError)
		})
	}
	if inLambda {
		awslambda.Start(lambda.FunctionURLHandler(h))
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("offload-resolver listening", "addr", *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("offload-resolver", "err", err)
		return 1
	}
	return 0
}

// build turns the settings into the handler, with the SDK clients made once.
func build(ctx context.Context, log *slog.Logger, getenv func(string) string, bucket, table, keyPrefix, urlPrefix, expiry, verify, pathStyle string) (http.Handler, error) {
	cfg := lambda.Config{
		Mapping: offload.Mapping{URLPrefix: urlPrefix, KeyPrefix: keyPrefix},
		Bucket:  bucket, Table: table, Logger: log,
	}
	var errs []error
	d, err := time.ParseDuration(expiry)
	if err != nil {
		errs = append(errs, fmt.Errorf("expiry: want a duration like 15m, got %q", expiry))
	}
	cfg.Expiry = d
	switch verify {
	case "ledger":
		cfg.Verify = true
	case "none":
	default:
		errs = append(errs, fmt.Errorf("verify: want ledger or none, got %q", verify))
	}
	if key := getenv("OFFLOAD_SIGNING_KEY"); key != "" {
		if len(key) < offload.MinSigningKeyBytes {
			errs = append(errs, fmt.Errorf("signing key: %d bytes, want at least %d", len(key), offload.MinSigningKeyBytes))
		}
		cfg.Access = lambda.SignedLinks{Key: []byte(key)}
	}
	usePathStyle := pathStyle == "true" || pathStyle == "auto" && (getenv("AWS_ENDPOINT_URL_S3") != "" || getenv("AWS_ENDPOINT_URL") != "")
	if pathStyle != "true" && pathStyle != "false" && pathStyle != "auto" {
		errs = append(errs, fmt.Errorf("s3-path-style: want true, false or auto, got %q", pathStyle))
	}
	cdn, err := cdnSettings(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	// The resolver's own settings are judged before the AWS ones, so a
	// mistake is reported the same on every machine.
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("AWS region: not set (AWS_REGION)")
	}
	if cdn.on() {
		if cfg.CDN, err = cdn.load(ctx, secretsmanager.NewFromConfig(awsCfg)); err != nil {
			return nil, err
		}
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = usePathStyle })
	return lambda.NewHandler(cfg, s3.NewPresignClient(s3c), dynamodb.NewFromConfig(awsCfg), awsCfg.Credentials)
}

// sign prints a signed link for a URL path.
func sign(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("offload-resolver sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	expires := fs.Duration("expires", time.Hour, "how long the link stays valid")
	urlPrefix := fs.String("url-prefix", firstNonEmpty(getenv("OFFLOAD_URL_PREFIX"), offload.DefaultMapping.URLPrefix), "URL path prefix (env OFFLOAD_URL_PREFIX)")
	keyPrefix := fs.String("key-prefix", firstNonEmpty(getenv("OFFLOAD_KEY_PREFIX"), offload.DefaultMapping.KeyPrefix), "key prefix (env OFFLOAD_KEY_PREFIX)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "offload-resolver sign: want one URL path, e.g. /static/cat.jpg")
		return 2
	}
	key := getenv("OFFLOAD_SIGNING_KEY")
	link, err := offload.SignLink([]byte(key), offload.Mapping{URLPrefix: *urlPrefix, KeyPrefix: *keyPrefix}, fs.Arg(0), time.Now().Add(*expires))
	if err != nil {
		fmt.Fprintf(stderr, "offload-resolver sign: %v (the key comes from OFFLOAD_SIGNING_KEY)\n", err)
		return 2
	}
	fmt.Fprintln(stdout, link)
	return 0
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
